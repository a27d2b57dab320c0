"""A small in-memory LRU of live media objects, bounded in bytes.

Live parts are immutable (the session id is in every key) and every viewer of a
stream asks for the same few recent ones within a second, so one store read serves
them all. Concurrent misses for the same key share one read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Objects bigger than this are read through, not cached (a long segment of a 20 Mbit/s
# stream would push out a hundred parts).
MAX_ENTRY_FRACTION = 0.125


class MediaCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: str) -> bytes | None:
        data = self._entries.get(key)
        if data is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes * MAX_ENTRY_FRACTION or key in self._entries:
            return
        self._entries[key] = data
        self._size += len(data)
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted)

    async def fetch(self, key: str, load: Callable[[str], Awaitable[bytes]]) -> bytes:
        """The cached bytes, or ``load(key)`` once for all concurrent callers."""
        cached = self.get(key)
        if cached is not None:
            return cached
        inflight = self._inflight.get(key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        self.misses += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            data = await load(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(data)
            self.put(key, data)
            return data
        finally:
            del self._inflight[key]
