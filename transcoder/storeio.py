"""The object store from blocking code: a job's child process decodes and encodes on
plain threads, while :mod:`common.store` is async. A private event loop on one thread
runs the store; blocking code submits coroutines to it.

- :class:`StoreReader` is a seekable file object over one stored object (range reads
  in 4 MiB blocks with one block of read-ahead), so PyAV reads the source straight
  from the store: no temp copy, and no URL ever reaches FFmpeg's protocol layer.
- :class:`Uploads` writes finished files with a bounded number in flight, so a slow
  store slows the encoders down instead of piling segments up in memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from typing import Any, TypeVar

from common.settings import Settings
from common.store import ObjectStore, StoreUnavailable, create_store

__all__ = ["StoreBridge", "StoreReader", "Uploads"]

T = TypeVar("T")

BLOCK_SIZE = 4 * 1024 * 1024
CACHED_BLOCKS = 4
# One store call; a stuck backend must fail the job (and get it retried), not hang it.
CALL_TIMEOUT_S = 120.0


class StoreBridge:
    """An :class:`ObjectStore` and the event loop thread it runs on."""

    def __init__(self, settings: Settings) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="store-loop", daemon=True
        )
        self._thread.start()
        self.store: ObjectStore = create_store(settings)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT_S) -> T:
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise StoreUnavailable(f"object store call timed out after {timeout} s") from exc

    def close(self) -> None:
        try:
            self.call(self.store.close(), timeout=30.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
            self._loop.close()


class StoreReader:
    """A read-only, seekable file object over ``key`` (what ``av.open`` accepts)."""

    def __init__(self, bridge: StoreBridge, key: str) -> None:
        self._bridge = bridge
        self._key = key
        self.size = bridge.call(bridge.store.stat(key)).size
        self._pos = 0
        self._blocks: OrderedDict[int, concurrent.futures.Future[bytes]] = OrderedDict()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"unsupported whence {whence}")
        if target < 0:
            raise ValueError(f"seek to {target} before the start of {self._key!r}")
        self._pos = target
        return target

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self.size:
            return b""
        if size < 0:
            size = self.size - self._pos
        parts: list[bytes] = []
        while size > 0 and self._pos < self.size:
            index, offset = divmod(self._pos, BLOCK_SIZE)
            chunk = self._block(index)[offset : offset + size]
            if not chunk:
                raise StoreUnavailable(f"{self._key!r} shrank while being read")
            parts.append(chunk)
            self._pos += len(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        for future in self._blocks.values():
            future.cancel()
        self._blocks.clear()

    def _fetch(self, index: int) -> concurrent.futures.Future[bytes]:
        future = self._blocks.get(index)
        if future is None:
            start = index * BLOCK_SIZE
            end = min(start + BLOCK_SIZE, self.size) - 1
            future = self._bridge.submit(self._bridge.store.read_range(self._key, start, end))
            self._blocks[index] = future
        self._blocks.move_to_end(index)
        while len(self._blocks) > CACHED_BLOCKS:
            _, old = self._blocks.popitem(last=False)
            old.cancel()
        return future

    def _block(self, index: int) -> bytes:
        future = self._fetch(index)
        if (index + 1) * BLOCK_SIZE < self.size:
            self._fetch(index + 1)  # read-ahead: demuxing is mostly sequential
            self._blocks.move_to_end(index)
        try:
            return future.result(CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError as exc:
            raise StoreUnavailable(f"reading {self._key!r} timed out") from exc


class Uploads:
    """Puts from any thread, at most ``max_in_flight`` at once; errors surface on the
    next :meth:`put` or in :meth:`wait`."""

    def __init__(self, bridge: StoreBridge, *, max_in_flight: int = 8) -> None:
        self._bridge = bridge
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._error: BaseException | None = None
        self.bytes_written = 0

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self._raise_error()
        if not self._slots.acquire(timeout=CALL_TIMEOUT_S):
            raise StoreUnavailable("uploads did not drain in time")
        future = self._bridge.submit(self._bridge.store.put(key, data, content_type=content_type))
        with self._lock:
            self._pending.add(future)
            self.bytes_written += len(data)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
            if self._error is None and not future.cancelled() and future.exception():
                self._error = future.exception()
        self._slots.release()

    def _raise_error(self) -> None:
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def wait(self) -> None:
        """Block until every put so far is stored; raise the first failure."""
        with self._lock:
            pending = list(self._pending)
        _, not_done = concurrent.futures.wait(pending, timeout=CALL_TIMEOUT_S)
        if not_done:
            raise StoreUnavailable(f"{len(not_done)} uploads still running after the timeout")
        self._raise_error()
