"""The object-store interface every backend implements, and its small value types.

Keys are S3-style ("live/42/seg_00017.m4s"); see :mod:`common.store.keys` for the rules.
All operations are async; backends do their blocking I/O on worker threads.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

from common.store.errors import (
    InvalidKey,
    InvalidPart,
    InvalidRange,
    LengthMismatch,
    ObjectNotFound,
    PartTooSmall,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)
from common.store.keys import validate_key, validate_prefix

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "MAX_PART_NUMBER",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "BlockingBody",
    "Body",
    "InvalidKey",
    "InvalidPart",
    "InvalidRange",
    "LengthMismatch",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStream",
    "PartInfo",
    "PartTooSmall",
    "StoreError",
    "StoreUnavailable",
    "UploadNotFound",
    "validate_key",
    "validate_prefix",
]

T = TypeVar("T")

# S3 multipart limits (AWS "Amazon S3 multipart upload limits"); the folder store
# enforces the same ones so code tested on it does not break on MinIO.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PART_NUMBER = 10_000

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Bytes per thread hop when streaming out: big enough that the hop (~50 us) is noise.
DEFAULT_CHUNK_SIZE = 1024 * 1024


@runtime_checkable
class BlockingBody(Protocol):
    """A body a worker thread reads straight into the store's own buffers.

    The folder store streams it into its temp file on threads only, with no hop
    through the event loop per chunk (a tus PATCH whose socket the gateway hands
    over); other stores read it on a thread, chunk by chunk (:func:`aiter_body`).
    """

    def readinto(self, view: memoryview) -> int:
        """Blocking: fill ``view`` with the next bytes, as many as come; 0 at the end."""
        ...

    def ended(self, read_back: Callable[[], bytes]) -> None:
        """Called once, on the reading thread, after the last byte and before the
        object is published. May raise to refuse the object, which is then dropped;
        ``read_back()`` returns every byte written, for a refusal that keeps them."""
        ...


Body = bytes | AsyncIterable[bytes] | BlockingBody


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    # Opaque; changes whenever the content is rewritten. Not always an MD5 (S3
    # multipart etags are not, folder-store etags never are).
    etag: str
    # None in listings: S3's ListObjects does not return it, so neither backend does.
    content_type: str | None
    last_modified: datetime


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    upload_id: str
    key: str


@dataclass(frozen=True, slots=True)
class PartInfo:
    number: int
    etag: str
    size: int


class BlockingReader(Protocol):
    """What a backend hands :class:`ObjectStream`: a blocking file-like source."""

    def read(self, size: int, /) -> bytes: ...
    def close(self) -> None: ...


class BlockingRunner(Protocol):
    """Runs a blocking call on a worker thread (the backend decides which pool)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


class ObjectStream(AsyncIterator[bytes]):
    """The bytes of one object, or of one range of it, read lazily off the event loop.

    Iterate it to the end (it then closes itself) or use ``async with``: an abandoned
    S3 stream holds a pooled connection until garbage collection.
    ``info`` describes the whole object; ``start``/``end`` (inclusive) the bytes served.
    """

    def __init__(
        self,
        *,
        info: ObjectInfo,
        start: int,
        end: int,
        reader: BlockingReader,
        run: BlockingRunner,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.info = info
        self.start = start
        self.end = end
        self._reader = reader
        self._run = run
        self._chunk_size = chunk_size
        self._remaining = end - start + 1
        self._closed = False
        # A read cancelled on the loop side still runs on its thread; close() takes
        # the same lock so it never closes the source under a running read.
        self._lock = threading.Lock()

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def __aiter__(self) -> Self:
        return self

    def _read(self, size: int) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            return self._reader.read(size)

    def _close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._reader.close()

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._closed:
            await self.aclose()
            raise StopAsyncIteration
        size = min(self._chunk_size, self._remaining)
        try:
            chunk = await self._run(lambda: self._read(size))
        except BaseException:
            await self.aclose()
            raise
        if not chunk:
            if self._closed:
                raise StopAsyncIteration
            await self.aclose()
            served = self.length - self._remaining
            raise StoreUnavailable(
                f"stream of {self.info.key!r} ended after {served} of {self.length} bytes"
            )
        self._remaining -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            await self._run(self._close)

    async def read_all(self) -> bytes:
        async with self:
            return b"".join([chunk async for chunk in self])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def check_range(key: str, size: int, start: int, end_inclusive: int) -> None:
    """Both backends refuse the same ranges (S3 would clamp an ``end`` past the size)."""
    if start < 0 or end_inclusive < start:
        raise InvalidRange(f"bad range {start}-{end_inclusive} for {key!r}")
    if end_inclusive >= size:
        raise InvalidRange(f"range {start}-{end_inclusive} is outside {key!r} ({size} bytes)")


def check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise InvalidPart(f"part number {number} is outside 1..{MAX_PART_NUMBER}")


def check_expiry(expires_s: int) -> None:
    # SigV4 presigned URLs live at most 7 days (AWS "Sharing objects with presigned URLs").
    if not 1 <= expires_s <= 7 * 24 * 3600:
        raise ValueError(f"expires_s must be within 1..604800, got {expires_s}")


class ObjectStore(abc.ABC):
    """One async interface over the folder store and S3/MinIO.

    Writes are atomic (a reader sees the old object or the new one, never a mix) and
    a returned write is durable. Listing is sorted by key (UTF-8 byte order, as S3).
    """

    #: The S3 rule, also enforced by the folder store: parts but the last are >= this.
    MIN_PART_SIZE = MIN_PART_SIZE

    @abc.abstractmethod
    async def ensure_ready(self) -> None:
        """Create what the store needs (root folder, bucket); safe to call again."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release threads and connections; the store is unusable afterwards."""

    @abc.abstractmethod
    async def put(
        self,
        key: str,
        data: Body,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        length: int | None = None,
        durable: bool = True,
    ) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there.

        An async iterable is streamed, never gathered whole (S3 holds one part in
        memory). With ``length`` given, a body of another size raises
        :class:`LengthMismatch` and stores nothing. ``durable=False`` is for transient
        objects (LL-HLS parts, deleted seconds later): the folder store then skips its
        fsyncs — a power cut may lose the object, never tear it (the rename is still
        atomic). S3 acknowledges only durable writes either way.
        """

    @abc.abstractmethod
    async def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectStream:
        """Open ``key`` for streaming. Raises :class:`ObjectNotFound` here, not mid-stream."""

    @abc.abstractmethod
    async def get_range(
        self, key: str, start: int, end_inclusive: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ObjectStream:
        """Like :meth:`get` for bytes ``start..end_inclusive``; outside → :class:`InvalidRange`."""

    async def read(self, key: str) -> bytes:
        """The whole object in memory: for small objects (playlists, metadata)."""
        return await (await self.get(key)).read_all()

    async def read_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        return await (await self.get_range(key, start, end_inclusive)).read_all()

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Metadata of ``key``; raises :class:`ObjectNotFound`."""

    async def exists(self, key: str) -> bool:
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error (S3 semantics)."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many.

        An empty prefix is refused: wiping a whole store takes an explicit loop.
        """

    @abc.abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix), sorted by key."""

    @abc.abstractmethod
    async def presigned_get_url(self, key: str, expires_s: int = 3600) -> str:
        """A URL that downloads ``key`` without credentials.

        S3: a SigV4-signed URL on the S3 endpoint. Folder store: ``{base}/{key}``,
        which the gateway serves (and guards) itself; ``expires_s`` is not encoded.
        """

    @abc.abstractmethod
    async def create_multipart(
        self, key: str, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> MultipartUpload: ...

    @abc.abstractmethod
    async def upload_part(
        self,
        upload: MultipartUpload,
        part_number: int,
        data: Body,
        length: int | None = None,
    ) -> PartInfo:
        """Upload (or replace) one part, numbered 1..10000.

        S3 needs the part in memory to sign it, so keep parts to tens of MiB.
        """

    @abc.abstractmethod
    async def list_parts(self, upload: MultipartUpload) -> builtins.list[PartInfo]:
        """Parts uploaded so far, by number (what a tus HEAD sums up to resume)."""

    @abc.abstractmethod
    async def complete_multipart(
        self, upload: MultipartUpload, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        """Join ``parts`` (ascending numbers, etags from upload_part/list_parts).

        Parts not named are discarded. Raises :class:`PartTooSmall` when a part other
        than the last is under :data:`MIN_PART_SIZE`, :class:`InvalidPart` otherwise.
        """

    @abc.abstractmethod
    async def list_multipart(self, key: str) -> builtins.list[MultipartUpload]:
        """Uploads in progress for exactly ``key`` (a resumed or retried upload may
        have left several), by upload id.

        Exact key, not a prefix: MinIO's ListMultipartUploads only matches a whole
        object name. MinIO itself drops uploads idle past its ``stale_uploads_expiry``
        (24 h by default); AWS needs an AbortIncompleteMultipartUpload lifecycle rule.
        """

    @abc.abstractmethod
    async def abort_multipart(self, upload: MultipartUpload) -> None:
        """Drop the upload and its parts; aborting twice is not an error."""

    @abc.abstractmethod
    async def compose(
        self,
        dest: str,
        sources: Sequence[str],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Write ``dest`` as the concatenation of ``sources`` (server-side on S3).

        Same size rule as multipart: every source but the last >= MIN_PART_SIZE.
        """


async def aiter_body(data: Body) -> AsyncIterator[bytes]:
    """Yield a body's chunks, whether it came as bytes or as an async iterable."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data):
            yield bytes(data)
        return
    if isinstance(data, BlockingBody):
        async for chunk in _aiter_blocking(data):
            yield chunk
        return
    async for chunk in data:
        if chunk:
            yield bytes(chunk)


async def _aiter_blocking(data: BlockingBody) -> AsyncIterator[bytes]:
    seen: list[bytes] = []  # for ended(): a refusal may keep them (references only)

    def read() -> bytes:
        buffer = bytearray(DEFAULT_CHUNK_SIZE)
        # Copied, not resized: an interruption kept by the body may still hold a view.
        return bytes(buffer[: data.readinto(memoryview(buffer))])

    while chunk := await asyncio.to_thread(read):
        seen.append(chunk)
        yield chunk
    await asyncio.to_thread(data.ended, lambda: b"".join(seen))


def check_length(key: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise LengthMismatch(f"body for {key!r} announced {expected} bytes, sent {actual}")


def check_part_order(parts: Sequence[PartInfo]) -> None:
    """The ordering checks S3 makes on CompleteMultipartUpload, before any I/O."""
    if not parts:
        raise InvalidPart("complete needs at least one part")
    numbers = [part.number for part in parts]
    for number in numbers:
        check_part_number(number)
    if numbers != sorted(set(numbers)):
        raise InvalidPart(f"part numbers must be strictly ascending, got {numbers}")


def check_part_sizes(sizes: Sequence[tuple[str, int]]) -> None:
    """S3's EntityTooSmall rule over (name, real size) pairs, in order."""
    for name, size in sizes[:-1]:
        if size < MIN_PART_SIZE:
            raise PartTooSmall(
                f"{name} is {size} bytes; every part but the last must be at least "
                f"{MIN_PART_SIZE} bytes (S3 EntityTooSmall)"
            )
