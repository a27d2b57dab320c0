"""Many ``chunk.uploaded`` folded into one per upload, for batch consumers.

Every durable chunk of every upload is an event; a projection that only keeps an
upload's offset and expiry needs the newest of them. Folding a batch down to one
event per upload lets such a consumer write once per upload per batch instead of
once per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from events.catalog import ChunkUploaded

__all__ = ["newest_per_upload"]


def newest_per_upload(chunks: Iterable[ChunkUploaded]) -> list[ChunkUploaded]:
    """One event per upload that folds like all of its chunks: the chunk ending
    furthest (the completing one, on a tie), dated by the latest of them, since an
    expiry and an ``updated_at`` follow the newest event. Sorted by upload, so
    concurrent folds take row locks in one order."""
    newest: dict[str, ChunkUploaded] = {}
    for chunk in chunks:
        seen = newest.get(chunk.upload_id)
        if seen is None:
            newest[chunk.upload_id] = chunk
            continue
        reach = (chunk.offset + chunk.length, chunk.complete)
        further = chunk if reach > (seen.offset + seen.length, seen.complete) else seen
        at = max(chunk.occurred_at, seen.occurred_at)
        newest[chunk.upload_id] = msgspec.structs.replace(further, occurred_at=at)
    return [newest[upload_id] for upload_id in sorted(newest)]
