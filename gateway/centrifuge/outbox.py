"""What waits to be written to one socket: bounded, so a slow reader cannot grow it.

The fan-out never waits for a socket: it appends here and moves on. The connection's
writer task takes everything queued at once and writes it as one frame (JSON messages
joined by ``\\n``, client protocol batching): under load, one write per socket per
wake-up instead of one per message. When a reader falls so far behind that
``max_bytes`` are waiting, :meth:`put` refuses and the connection is dropped as slow
(disconnect 3008, centrifuge's ``DisconnectSlow``); the SDK reconnects and recovers.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Outbox:
    __slots__ = ("_empty", "_event", "_frames", "_size", "closed", "max_bytes", "overflowed")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._frames: deque[str] = deque()
        self._size = 0
        self._event = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.closed = False
        self.overflowed = False

    @property
    def size(self) -> int:
        return self._size

    def put(self, frame: str) -> bool:
        """Queue ``frame``; False (and nothing queued) when closed or over the limit."""
        if self.closed:
            return False
        if self._size + len(frame) > self.max_bytes:
            self.overflowed = True
            return False
        self._frames.append(frame)
        self._size += len(frame)
        self._event.set()
        self._empty.clear()
        return True

    async def take(self) -> str:
        """Everything queued, as one frame; waits while there is nothing."""
        while not self._frames:
            self._empty.set()
            self._event.clear()
            await self._event.wait()
        if len(self._frames) == 1:
            frame = self._frames.popleft()
        else:
            frame = "\n".join(self._frames)
            self._frames.clear()
        self._size = 0
        return frame

    async def drained(self) -> None:
        """Until the writer has taken everything queued so far and come back for more."""
        await self._empty.wait()

    def close(self) -> None:
        """Refuse further frames and drop what is queued (memory goes back at once)."""
        self.closed = True
        self._frames.clear()
        self._size = 0
        self._event.set()
        self._empty.set()
