"""What waits to be written to one socket: bounded, so a slow reader cannot grow it.

The fan-out never waits for a socket: it appends here and moves on. The connection's
writer task takes everything queued at once and writes it as one frame (JSON messages
joined by ``\\n``, client protocol batching): under load, one write per socket per
wake-up instead of one per message. When a reader falls so far behind that
``max_bytes`` are waiting, :meth:`put` refuses and the connection is dropped as slow
(disconnect 3008, centrifuge's ``DisconnectSlow``); the SDK reconnects and recovers.

Given the socket's transport (:func:`gateway.centrifuge.wsframe.raw_transport`), the
outbox writes instead of queueing: each frame goes out pre-encoded at once, in call
order, and the transport's own buffer is what ``max_bytes`` bounds.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gateway.centrifuge.wsframe import text_frame


class Outbox:
    __slots__ = (
        "_empty",
        "_event",
        "_frames",
        "_size",
        "closed",
        "max_bytes",
        "overflowed",
        "transport",
    )

    def __init__(self, max_bytes: int, transport: asyncio.Transport | None = None) -> None:
        self.max_bytes = max_bytes
        self.transport = transport
        self._frames: deque[str] = deque()
        self._size = 0
        self._event = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.closed = False
        self.overflowed = False

    @property
    def direct(self) -> bool:
        return self.transport is not None

    @property
    def size(self) -> int:
        if self.transport is not None and not self.closed:
            return self.transport.get_write_buffer_size()
        return self._size

    def put(self, frame: str) -> bool:
        """Queue ``frame``; False (and nothing queued) when closed or over the limit."""
        if self.transport is not None:
            return self.put_wire(text_frame(frame.encode()))
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

    def put_wire(self, wire: bytes) -> bool:
        """Direct mode: write an encoded frame now; False when closed or over the limit."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(wire) > self.max_bytes:
            self.overflowed = True
            return False
        transport.write(wire)
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
