"""A request body's chunks between the parser and the application, without copies.

uvicorn's httptools protocol appends every chunk llhttp hands over to one bytearray
and its ``receive`` returns ``bytes(bytearray)``: two copies of each body byte on the
event loop, and with a high-water mark of 64 KiB the socket is paused and resumed
(two ``epoll_ctl`` and a loop turn) for every 256 KiB read. For an 8 MiB tus PATCH
that was ~13 ms of event-loop CPU; handing the parser's own ``bytes`` objects over
one by one, with reading paused only past :data:`HIGH_WATER`, is ~5 ms (measured
with a bare uvicorn and an 8 MiB body, ``gateway/http_protocol.py``).

Sans-IO: the protocol pushes, ``receive`` pops, and both act on what this says about
pausing the socket.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["HIGH_WATER", "LOW_WATER", "BodyQueue"]

# Past this many bytes waiting for the application the socket stops being read: the
# bound on what one connection holds (plus one read of the transport).
HIGH_WATER: Final = 1024 * 1024
# Reading resumes once the application has taken the queue down to this.
LOW_WATER: Final = HIGH_WATER // 2


class BodyQueue:
    """Chunks in arrival order; the byte count decides when reading pauses."""

    __slots__ = ("_chunks", "_queued")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._queued = 0

    def __bool__(self) -> bool:
        return bool(self._chunks)

    @property
    def queued(self) -> int:
        return self._queued

    def push(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True when reading should pause now."""
        if chunk:
            self._chunks.append(chunk)
            self._queued += len(chunk)
        return self._queued > HIGH_WATER

    def pop(self) -> tuple[bytes, bool]:
        """(the oldest chunk, whether reading may resume); ``b""`` when empty."""
        if not self._chunks:
            return b"", True
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        return chunk, self._queued <= LOW_WATER
