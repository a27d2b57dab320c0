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
from typing import Protocol

from common.logs import get_logger
from common.store import (
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    Body,
    MultipartUpload,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
)
from gateway.tus.body import BodyInterrupted, ThreadBodyReader
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

    def state_after(self, before: DurableState) -> DurableState:
        """What the store holds once this write of ``before`` returned: what
        :func:`load_state` would find, known to the lock's holder without asking."""
        parts = before.parts + tuple(self.parts_written)
        return DurableState(parts, self.offset - sum(part.size for part in parts))


class _Divert(Exception):  # noqa: N818 - control flow, never leaves this module
    """The bytes fed to a part are too few to be one (and not the end): make them the tail."""


class _Source:
    """The request body as a pull source that can hand out a prefix of a chunk."""

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self._body = body.__aiter__()
        self._pending = b""
        self.ended = False
        self.interrupted: BodyInterrupted | None = None

    async def exhausted(self) -> bool:
        """True once the body has ended and every byte was handed out."""
        if not self._pending and not self.ended:
            await self._fill()
        return not self._pending and self.ended

    async def _fill(self) -> None:
        try:
            self._pending = await anext(self._body)
        except StopAsyncIteration:
            self.ended = True
        except BodyInterrupted as interrupted:
            # What arrived before the break is kept: the caller decides where it goes.
            self.interrupted = interrupted
            self.ended = True

    async def read(self, limit: int) -> bytes:
        if not self._pending and not self.ended:
            await self._fill()
        chunk, self._pending = self._pending[:limit], self._pending[limit:]
        return chunk


class _ThreadFeed:
    """One part's bytes for the store to read on its worker thread (a BlockingBody):
    ``head`` (the old tail), then the body, up to ``part_size``.

    A break in the body ends the part, keeping what came (:attr:`interrupted`). At the
    end, bytes too few to be a part (and not the upload's end) raise :class:`_Divert`
    after reading them back as :attr:`tail`: nothing is kept in memory meanwhile,
    since that case is rare (a cut PATCH, a small one) and the file has them.
    """

    def __init__(
        self,
        head: bytes,
        reader: ThreadBodyReader,
        *,
        part_size: int,
        is_tail: Callable[[int], bool],
        guard: Callable[[], None],
    ) -> None:
        self._head = memoryview(head)
        self._reader = reader
        self._part_size = part_size
        self._is_tail = is_tail  # of this many bytes: no part (ChunkWriter._is_tail)
        self._guard = guard
        self.total = 0
        self.interrupted: BodyInterrupted | None = None
        self.tail = b""

    def readinto(self, view: memoryview) -> int:
        if self._head:
            count = min(len(view), len(self._head))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
        else:
            room = self._part_size - self.total
            if room <= 0 or self.interrupted is not None:
                return 0
            self._guard()
            try:
                count = self._reader.readinto(view[:room])
            except BodyInterrupted as interrupted:
                # Without its traceback, whose frames hold views of the store's buffers.
                self.interrupted = interrupted.with_traceback(None)
                return 0
        self.total += count
        return count

    def ended(self, read_back: Callable[[], bytes]) -> None:
        self._guard()
        if self._is_tail(self.total):
            self.tail = read_back()
            raise _Divert


class ChunkWriter:
    """Streams bodies into one upload's parts and tail. One writer per locked PATCH.

    Each part is streamed into the store while the body arrives (the folder store
    writes it to disk as it comes and fsyncs once at the end; S3 gathers the part to
    sign it). Only when a part ends short of ``min_part`` and is not the file's end
    do its bytes become the tail instead, which is why the first ``min_part`` bytes
    of a part are also kept in memory until that is decided.
    """

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

    async def write(self, body: AsyncIterator[bytes] | ThreadBodyReader) -> WriteResult:
        """Append ``body`` durably. A body that breaks off keeps what arrived (the
        interruption is reported in the result, not raised); a store failure raises,
        with everything written before it still durable.

        A :class:`ThreadBodyReader` is handed to the store to read on its own thread."""
        if isinstance(body, ThreadBodyReader):
            return await self._write_parts(_ThreadParts(self, body))
        return await self._write_parts(_LoopParts(self, _Source(body)))

    async def _write_parts(self, parts: _Parts) -> WriteResult:
        state = self._state
        result = WriteResult(start=state.offset, offset=state.offset, last_part=0)
        old_tail = tail_key(self._upload_id, state.parts_size) if state.tail_size else None
        head = await self._store.read(old_tail) if old_tail is not None else b""
        base = state.parts_size  # file offset where the next part starts
        number = state.next_part
        while True:
            feed = parts.feed(head, base)
            try:
                self._guard()
                part = await self._store.upload_part(self._multipart, number, feed)
            except _Divert:
                tail = parts.tail()
                if len(tail) > len(head):  # new bytes: the tail grows (replaced whole)
                    self._guard()
                    await self._store.put(tail_key(self._upload_id, base), tail)
                result.offset = base + len(tail)
                break
            result.parts_written.append(part)
            result.last_part = number
            base += part.size
            result.offset = base
            number += 1
            head = b""
            if base == self._final_length or await parts.exhausted():
                break
        result.interrupted = parts.interrupted
        if old_tail is not None and base > state.parts_size:
            await self._forget(old_tail)  # folded into a part: stale now
        if self._final_length is not None and result.offset == self._final_length:
            await self._forget_tails()
        return result

    def _thread_feed(self, head: bytes, reader: ThreadBodyReader, base: int) -> _ThreadFeed:
        return _ThreadFeed(
            head,
            reader,
            part_size=self._part_size,
            is_tail=lambda total: self._is_tail(base, total),
            guard=self._guard,
        )

    def _is_tail(self, base: int, total: int) -> bool:
        """``total`` bytes from ``base`` cannot be a part (too few, and not the upload's
        end): they become the tail."""
        final = self._final_length is not None and base + total == self._final_length
        return total == 0 or (total < self._min_part and not final)

    async def _feed(
        self, head: bytes, source: _Source, base: int, kept: list[bytes]
    ) -> AsyncIterator[bytes]:
        """One part's bytes: ``head`` (the old tail), then the body, up to ``part_size``.

        Raises :class:`_Divert` at its end when they cannot be a part, which makes the
        store drop the part it was writing.
        """
        total = 0
        if head:
            kept.append(head)
            total = len(head)
            yield head
        while total < self._part_size:
            chunk = await source.read(self._part_size - total)
            if not chunk:
                break
            self._guard()
            if total < self._min_part:
                kept.append(chunk)  # may still have to become the tail
            total += len(chunk)
            yield chunk
        if self._is_tail(base, total):
            raise _Divert

    async def _forget(self, key: str) -> None:
        # Best effort: a stale tail is ignored by load_state and removed at the end.
        with contextlib.suppress(Exception):
            await self._store.delete(key)

    async def _forget_tails(self) -> None:
        with contextlib.suppress(Exception):
            await self._store.delete_prefix(tail_prefix(self._upload_id))


class _Parts(Protocol):
    """Where a write's parts come from: the body read on the loop, or on a thread."""

    @property
    def interrupted(self) -> BodyInterrupted | None: ...

    def feed(self, head: bytes, base: int) -> Body: ...

    def tail(self) -> bytes:
        """The last feed's bytes, once it raised :class:`_Divert`."""
        ...

    async def exhausted(self) -> bool: ...


class _LoopParts:
    def __init__(self, writer: ChunkWriter, source: _Source) -> None:
        self._writer = writer
        self._source = source
        self._kept: list[bytes] = []

    @property
    def interrupted(self) -> BodyInterrupted | None:
        return self._source.interrupted

    def feed(self, head: bytes, base: int) -> Body:
        self._kept = []  # the body's own chunks: no copy unless diverted
        return self._writer._feed(head, self._source, base, self._kept)

    def tail(self) -> bytes:
        return b"".join(self._kept)

    async def exhausted(self) -> bool:
        return await self._source.exhausted()


class _ThreadParts:
    def __init__(self, writer: ChunkWriter, reader: ThreadBodyReader) -> None:
        self._writer = writer
        self._reader = reader
        self._feed: _ThreadFeed | None = None

    @property
    def interrupted(self) -> BodyInterrupted | None:
        # An interrupted part is the write's last: the last feed's says it.
        return self._feed.interrupted if self._feed is not None else None

    def feed(self, head: bytes, base: int) -> Body:
        self._feed = self._writer._thread_feed(head, self._reader, base)
        return self._feed

    def tail(self) -> bytes:
        assert self._feed is not None
        return self._feed.tail

    async def exhausted(self) -> bool:
        return self.interrupted is not None or self._reader.exhausted
