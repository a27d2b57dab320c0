"""The durable state of an upload in the object store, and the writer that grows it.

An upload is one multipart upload on its final key plus, at most, one *tail* object
(layout.py). The offset is never stored anywhere: :func:`load_state` derives it from
what the store really holds, like tusd does on S3 (NOTES.md, "tus and S3"):

    offset = sum(sizes of the parts) + size of the tail that starts at that sum

S3 refuses parts under 5 MiB except the last (``MIN_PART_SIZE``; the folder store
enforces the same rule), while tus clients send chunks of any size. So a PATCH body is
cut into parts of ``part_size`` as it streams in, and what is left at its end is
either a part (at least the minimum, or the upload's last byte) or the new tail. The
next PATCH starts from the old tail's bytes, so the tail is folded into the next part.

Crash safety: every store write is atomic (a part, or the tail replaced whole), and a
tail folded into a part is stale by construction — its start is now below the parts'
sum — so a crash between the part and the tail's delete loses nothing and counts
nothing twice. A success answer is only sent after :meth:`ChunkWriter.write` returned,
that is after every byte it reports is in the store.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from common.logs import get_logger
from common.store import (
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    MultipartUpload,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
)
from gateway.tus.body import BodyInterrupted
from gateway.tus.layout import tail_key, tail_prefix

__all__ = ["ChunkWriter", "DurableState", "WriteResult", "load_state", "part_sizes"]

log = get_logger(__name__)

# Headroom under S3's 10,000 parts: tails and a short last part need a few numbers.
_PART_BUDGET = MAX_PART_NUMBER - 1000


def part_sizes(chunk_size: int, size_bound: int) -> tuple[int, int]:
    """(part size, smallest part that is not the last) for an upload of ``size_bound``.

    Both grow for huge uploads so that even a stream of minimum-size parts fits
    within S3's part-count limit.
    """
    floor = max(MIN_PART_SIZE, math.ceil(size_bound / _PART_BUDGET))
    return max(chunk_size, floor), floor


@dataclass(frozen=True, slots=True)
class DurableState:
    parts: tuple[PartInfo, ...]
    tail_size: int

    @property
    def parts_size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def offset(self) -> int:
        return self.parts_size + self.tail_size

    @property
    def next_part(self) -> int:
        return max((part.number for part in self.parts), default=0) + 1


async def load_state(
    store: ObjectStore, upload_id: str, multipart: MultipartUpload | None
) -> DurableState:
    """What is durable now. Raises the store's errors (``UploadNotFound`` if aborted)."""
    if multipart is None:  # an empty upload has nothing stored at all
        return DurableState((), 0)
    parts = tuple(sorted(await store.list_parts(multipart), key=lambda part: part.number))
    start = sum(part.size for part in parts)
    try:
        tail = await store.stat(tail_key(upload_id, start))
    except ObjectNotFound:
        return DurableState(parts, 0)
    return DurableState(parts, tail.size)


@dataclass(slots=True)
class WriteResult:
    start: int  # the offset before this write
    offset: int  # the durable offset after it
    last_part: int  # highest part number written, 0 if only the tail changed
    interrupted: BodyInterrupted | None = None
    parts_written: list[PartInfo] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.offset - self.start


class ChunkWriter:
    """Streams bodies into one upload's parts and tail. One writer per locked PATCH."""

    def __init__(
        self,
        store: ObjectStore,
        upload_id: str,
        multipart: MultipartUpload,
        state: DurableState,
        *,
        part_size: int,
        min_part: int,
        final_length: int | None,
        guard: Callable[[], None] = lambda: None,
    ) -> None:
        if part_size < min_part or min_part < MIN_PART_SIZE:
            raise ValueError("part_size >= min_part >= MIN_PART_SIZE")
        self._store = store
        self._upload_id = upload_id
        self._multipart = multipart
        self._state = state
        self._part_size = part_size
        self._min_part = min_part
        self._final_length = final_length
        # Called before every store write: raises if the PATCH lost its lock.
        self._guard = guard

    async def write(self, body: AsyncIterator[bytes]) -> WriteResult:
        """Append ``body`` durably. A body that breaks off keeps what arrived (the
        interruption is reported in the result, not raised); a store failure raises,
        with everything written before it still durable."""
        state = self._state
        start = state.offset
        buffer = bytearray()
        old_tail = tail_key(self._upload_id, state.parts_size) if state.tail_size else None
        if old_tail is not None:
            buffer += await self._store.read(old_tail)
        base = state.parts_size  # file offset of buffer[0]
        carried = len(buffer)  # bytes already durable (the old tail) at buffer's head
        result = WriteResult(start=start, offset=start, last_part=0)
        number = state.next_part
        try:
            async for chunk in body:
                buffer += chunk
                while len(buffer) >= self._part_size:
                    await self._put_part(number, bytes(buffer[: self._part_size]), result)
                    del buffer[: self._part_size]
                    base += self._part_size
                    number += 1
                    carried = 0
        except BodyInterrupted as interrupted:
            result.interrupted = interrupted
        end = base + len(buffer)
        final = self._final_length is not None and end == self._final_length
        if buffer and (final or len(buffer) >= self._min_part):
            await self._put_part(number, bytes(buffer), result)
            base = end
        elif len(buffer) > carried:
            self._guard()
            await self._store.put(tail_key(self._upload_id, base), bytes(buffer))
        result.offset = end
        if old_tail is not None and base > state.parts_size:
            await self._forget(old_tail)  # folded into a part: stale now
        if final:
            await self._forget_tails()
        return result

    async def _put_part(self, number: int, data: bytes, result: WriteResult) -> None:
        self._guard()
        part = await self._store.upload_part(self._multipart, number, data)
        result.parts_written.append(part)
        result.last_part = number

    async def _forget(self, key: str) -> None:
        # Best effort: a stale tail is ignored by load_state and removed at the end.
        with contextlib.suppress(Exception):
            await self._store.delete(key)

    async def _forget_tails(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.delete_prefix(tail_prefix(self._upload_id))
