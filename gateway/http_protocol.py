"""The gateway's HTTP/1.1 protocol: uvicorn's httptools (llhttp) protocol, with a bounded head.

Why not uvicorn's default h11: h11 copies every body byte through its receive buffer
three times in Python (append, slice, delete), which made a tus PATCH cost ~20 ms of
event-loop CPU per 8 MiB before the application saw a byte; llhttp hands the body over
in C, ~8 ms for the same 8 MiB, most of it the kernel's recv and one memcpy (measured
with py-spy, ``tests/bench/bench_tus.py``). The WebSocket side is unaffected: an
upgrade hands the socket to the same websockets-sansio protocol either way.

What h11 gave and llhttp does not: a bound on the request head
(``h11_max_incomplete_event_size``). llhttp and httptools accumulate a header of any
length, so one hostile client could pin memory with an endless header. Here the bytes
fed while the head is incomplete are counted and the connection is answered 431 and
closed past :data:`MAX_HEAD_BYTES`.

The body goes to the application as the parser's own chunks, one per ``receive``,
through a :class:`~gateway.http_body_queue.BodyQueue` (no bytearray in between, and
the socket paused only past a 1 MiB backlog): what an upload costs the event loop.
A request with a Content-Length also offers its socket, for a handler that takes a big
body whole to read it on a thread (``gateway/http_socket_body.py``): the tus PATCH.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httptools
from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.http_body_queue import BodyQueue
from gateway.http_socket_body import EXTENSION, SocketBody

__all__ = ["MAX_HEAD_BYTES", "GatewayHttpProtocol"]

# Request line plus headers; browsers send a few KiB, a JWT cookie included.
MAX_HEAD_BYTES: Final = 64 * 1024

_TOO_LARGE_BODY: Final = b"the request head is over 64 KiB\n"
_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n"
    b"\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


class _QueuedCycle(RequestResponseCycle):
    """uvicorn's request cycle with ``receive`` taking the body from a queue.

    Set as the cycle's class right after uvicorn made it (the ASGI task has not run
    yet, so the application only ever sees this ``receive``); everything else is
    uvicorn's, but for one thing: the body that arrived before a disconnect is
    handed over before the ``http.disconnect`` (uvicorn drops what it buffered).
    """

    queue: BodyQueue
    parsed: int  # body bytes llhttp has handed over so far
    length: int | None  # Content-Length; None for a chunked body
    claimed_keep_alive: bool | None  # while the socket is claimed: keep_alive before

    async def receive(self) -> ASGIReceiveEvent:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.queue and not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
        # Every push and every end sets the event after changing the state read
        # below, so a cleared event with an empty queue means: nothing new yet.
        self.message_event.clear()
        # What arrived before a disconnect is handed over first: a cut upload keeps
        # every byte that reached us (up to a 1 MiB backlog can be queued by then).
        if self.response_complete or (self.disconnected and not self.queue):
            return {"type": "http.disconnect"}
        body, resume = self.queue.pop()
        if resume:
            self.flow.resume_reading()
        more = bool(self.queue) or self.more_body
        return {"type": "http.request", "body": body, "more_body": more}


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between requests counts as in a head: the next one's
        self._head_bytes = 0
        self._ended_in_read = False

    def data_received(self, data: bytes) -> None:
        self._ended_in_read = False
        super().data_received(data)
        # A read that leaves the head incomplete is all head, unless a previous request
        # ended inside it (pipelining): that read is not counted, so the bound is one
        # read (256 KiB) looser there, never a false refusal.
        if not self._in_head or self._ended_in_read:
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is previous:  # a WebSocket upgrade: no HTTP cycle
            return
        cycle.__class__ = _QueuedCycle
        assert isinstance(cycle, _QueuedCycle)
        cycle.queue = BodyQueue()
        cycle.parsed = 0
        cycle.claimed_keep_alive = None
        cycle.length = _content_length(self.headers)
        # Under TLS the socket holds ciphertext: only the transport can read it.
        if cycle.length is not None and self.scheme == "http":
            extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})
            extensions[EXTENSION] = SocketBody(self, cycle.length)

    def on_body(self, body: bytes) -> None:
        # uvicorn's checks: a body beside a WebSocket upgrade, or after the answer,
        # is dropped.
        if (
            self.parser.should_upgrade() and self._should_upgrade()
        ) or self.cycle.response_complete:
            return
        cycle = self.cycle
        assert isinstance(cycle, _QueuedCycle)
        cycle.parsed += len(body)
        if cycle.queue.push(body):
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._ended_in_read = True

    # -- the socket body (gateway/http_socket_body.py) ------------------------------

    def claim_socket_body(self, length: int) -> tuple[list[bytes], int, int] | None:
        cycle = self.cycle
        if (
            not isinstance(cycle, _QueuedCycle)
            or cycle.length != length
            or not cycle.more_body
            or cycle.disconnected
            or cycle.response_complete
            or cycle.claimed_keep_alive is not None
            or self.parser is None
            or self.transport.is_closing()
        ):
            return None
        self.flow.pause_reading()
        if cycle.waiting_for_100_continue:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        queued: list[bytes] = []
        while cycle.queue:
            queued.append(cycle.queue.pop()[0])
        # Until the body is read to its end the parser is out of step with the
        # socket: an answer before that must close the connection.
        cycle.claimed_keep_alive = cycle.keep_alive
        cycle.keep_alive = False
        fd: int = self.transport.get_extra_info("socket").fileno()
        return queued, length - cycle.parsed, fd

    def release_socket_body(self, *, complete: bool) -> None:
        cycle = self.cycle
        if not isinstance(cycle, _QueuedCycle) or cycle.claimed_keep_alive is None:
            return
        if not complete or self.parser is None or self.transport.is_closing():
            return  # keep_alive stays off: the answer closes the connection
        if cycle.response_complete:  # answered (and closed) before the body ended
            return
        cycle.keep_alive = cycle.claimed_keep_alive
        # The old parser still waits for the bytes the thread read: a new one, set up
        # as uvicorn sets up its own, starts at the next request.
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.on_message_complete()
        self.flow.resume_reading()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length when it has one (llhttp refused a malformed or doubled
    Content-Length, or one beside Transfer-Encoding, before the head completed)."""
    length: int | None = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value)
    return length


def uvicorn_protocol_options() -> dict[str, Any]:
    """What every uvicorn that serves the gateway (``python -m gateway``, tests) passes."""
    protocol: type[asyncio.Protocol] = GatewayHttpProtocol
    return {"http": protocol}
