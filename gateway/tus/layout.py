"""Where an upload's bytes live in the object store.

    uploads/{upload_id}/source                   the assembled file (the multipart's key)
    uploads/{upload_id}/tail-{start:020d}.part   bytes below the part minimum, not the end

The tail is named after the offset its first byte has in the file, which is the sum
of the multipart parts when it was written. That makes the durable offset derivable
(tusd's ``.part`` object, made crash-safe): ``parts + the tail starting where they
end``. A tail whose start is below the parts' sum was already folded into a part (a
crash between the part and the tail's delete) and is ignored, then cleaned up.

The uploader reads the same layout (uploader/layout.py): components never import each
other, so the two files must agree.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TAIL_PREFIX", "source_key", "tail_key", "tail_prefix", "upload_prefix"]

TAIL_PREFIX: Final = "tail-"


def upload_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/"


def source_key(upload_id: str) -> str:
    return f"uploads/{upload_id}/source"


def tail_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}/{TAIL_PREFIX}"


def tail_key(upload_id: str, start: int) -> str:
    # Zero-padded: tails sort by start in a listing.
    return f"uploads/{upload_id}/{TAIL_PREFIX}{start:020d}.part"
