"""Reading a request body off ASGI ``receive``, for uploads.

Litestar's ``request.stream()`` turns a client that hangs up into a generic 500-class
exception and has no read timeout (uvicorn has none either), so a client that goes
silent would pin its PATCH, and its lock, forever. This reader says precisely why the
body ended (:class:`BodyInterrupted` with ``reason``) so the engine can keep the bytes
that arrived, and it stops at ``limit``: a body longer than the upload is cut there
(RELIABILITY.md, "tus uploads"), the rest is never read.

Where the server offers the socket (``gateway/http_socket_body.py``), a big body is
read from it on a thread instead of through the event loop: the same chunks, the same
interruptions, a fraction of the loop's time. :class:`ThreadBodyReader` goes one
step further, for a store that reads on a thread: the store's own worker thread reads
the socket into its buffers, and the loop sees none of the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from gateway.http_socket_body import DirectBody

__all__ = ["BodyInterrupted", "Receive", "ThreadBodyReader", "read_body"]

Receive = Callable[[], Awaitable[Any]]


class BodyInterrupted(Exception):  # noqa: N818 - reads as what happened
    """The body ended before its end: the client left, or sent nothing for too long."""

    def __init__(self, reason: Literal["disconnect", "timeout"], received: int) -> None:
        super().__init__(f"body interrupted ({reason}) after {received} bytes")
        self.reason = reason
        self.received = received


async def read_body(
    receive: Receive, *, limit: int, timeout_s: float, direct: DirectBody | None = None
) -> AsyncIterator[bytes]:
    """Yield the body's chunks, at most ``limit`` bytes in all: from ``receive``, or
    from ``direct`` when the socket was claimed (its claimer releases it).

    Raises :class:`BodyInterrupted` on ``http.disconnect`` or when no chunk came for
    ``timeout_s`` seconds (the claim's own timeout for ``direct``).
    """
    if direct is not None:
        async for piece in _read_direct(direct, limit=limit):
            yield piece
        return
    received = 0
    while received < limit:
        try:
            async with asyncio.timeout(timeout_s):
                message = await receive()
        except TimeoutError:
            raise BodyInterrupted("timeout", received) from None
        kind = message.get("type")
        if kind == "http.disconnect":
            raise BodyInterrupted("disconnect", received)
        if kind != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        if chunk:
            if received + len(chunk) > limit:
                chunk = chunk[: limit - received]
            received += len(chunk)
            yield chunk
        if not message.get("more_body", False):
            return


async def _read_direct(direct: DirectBody, *, limit: int) -> AsyncIterator[bytes]:
    received = 0
    for parsed in direct.queued:
        chunk = parsed[: limit - received]
        if chunk:
            received += len(chunk)
            yield chunk
    while received < limit:
        try:
            chunk = await direct.read()
        except EOFError:
            raise BodyInterrupted("disconnect", received) from None
        except TimeoutError:
            raise BodyInterrupted("timeout", received) from None
        if not chunk:
            return
        chunk = chunk[: limit - received]
        received += len(chunk)
        yield chunk


class ThreadBodyReader:
    """A body claimed without read-ahead, read by one worker thread at a time: the
    bytes the parser had first, then the socket; at most ``limit`` bytes in all.

    :meth:`readinto` raises :class:`BodyInterrupted` like :func:`read_body` does, with
    the bytes received before it.
    """

    def __init__(self, direct: DirectBody, *, limit: int) -> None:
        self._direct = direct
        self._limit = limit
        self._queued = [memoryview(chunk) for chunk in direct.queued if chunk]
        self.received = 0

    @property
    def exhausted(self) -> bool:
        """Nothing more to read: the limit, or the body's end, is reached."""
        if self.received >= self._limit:
            return True
        return not self._queued and self._direct.remaining <= 0

    def readinto(self, view: memoryview) -> int:
        """Blocking: up to ``len(view)`` bytes into ``view``; 0 at the end."""
        view = view[: self._limit - self.received]
        if not view:
            return 0
        if self._queued:
            first = self._queued[0]
            count = min(len(first), len(view))
            view[:count] = first[:count]
            if count == len(first):
                self._queued.pop(0)
            else:
                self._queued[0] = first[count:]
        else:
            try:
                count = self._direct.readinto(view)
            except EOFError:
                raise BodyInterrupted("disconnect", self.received) from None
            except TimeoutError:
                raise BodyInterrupted("timeout", self.received) from None
        self.received += count
        return count
