"""Turning an upload's parts into one object, and hashing it.

Assembly is idempotent: the multipart upload is completed at most once by the store
(a second complete finds no upload), and "no upload, but an object of the right size"
means an earlier attempt finished — a redelivered completion assembles nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from common.logs import get_logger
from common.store import MultipartUpload, ObjectNotFound, ObjectStore, PartInfo, StoreError
from uploader.layout import source_key, upload_prefix

__all__ = ["MissingBytes", "assemble", "sha256_of"]

log = get_logger(__name__)

HASH_CHUNK = 4 * 1024 * 1024


class MissingBytes(Exception):  # noqa: N818 - a verdict
    """The store does not hold the upload's bytes (neither parts nor the object)."""


def _total(parts: list[PartInfo]) -> int:
    return sum(part.size for part in parts)


async def assemble(store: ObjectStore, upload_id: str, size: int) -> str:
    """Complete the upload's multipart upload into its source object; returns the key."""
    key = source_key(upload_id)
    candidates = await store.list_multipart(key)
    chosen: tuple[MultipartUpload, list[PartInfo]] | None = None
    for upload in candidates:
        parts = sorted(await store.list_parts(upload), key=lambda part: part.number)
        if parts and _total(parts) == size:
            chosen = (upload, parts)
            break
    if chosen is not None:
        upload, parts = chosen
        for other in candidates:
            if other != upload:
                # A leftover (a creation that failed half-way): nothing refers to it.
                await store.abort_multipart(other)
        info = await store.complete_multipart(upload, parts)
        log.info("upload assembled", upload_id=upload_id, size=info.size, parts=len(parts))
    try:
        info = await store.stat(key)
    except ObjectNotFound:
        raise MissingBytes(f"upload {upload_id}: no parts and no object in the store") from None
    if info.size != size:
        raise MissingBytes(f"upload {upload_id}: the object has {info.size} of {size} bytes")
    await _drop_tails(store, upload_id)
    return key


async def _drop_tails(store: ObjectStore, upload_id: str) -> None:
    prefix = f"{upload_prefix(upload_id)}tail-"
    with contextlib.suppress(StoreError):
        await store.delete_prefix(prefix)


async def sha256_of(store: ObjectStore, key: str) -> str:
    """The object's SHA-256, streamed (hashing runs off the event loop)."""
    digest = hashlib.sha256()
    stream = await store.get(key, chunk_size=HASH_CHUNK)
    async with stream:
        async for chunk in stream:
            await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest()
