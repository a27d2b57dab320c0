"""A request body read straight from the socket on a thread: the path for big uploads.

Through asyncio and llhttp every body byte is read into a fresh ``bytes`` by the event
loop, copied again into llhttp's chunk and a third time into the store's buffer. In
the tus benchmark that reading and parsing was 45 % of the gateway's event loop, which
was busy all the time (py-spy, ``tests/bench/bench_tus.py``): the loop, not the disk
or the client, set the pace of an upload.

A handler that takes the body whole claims the socket instead (:meth:`SocketBody.claim`):
the transport stops reading, the bytes llhttp already parsed are handed over, and the
rest of the body, exactly what its Content-Length still announces, is read by a
worker thread with ``os.read`` on a duplicate of the socket's descriptor. The thread
waits in ``poll`` with the GIL released, ``SO_RCVLOWAT`` makes each wake-up bring up
to :data:`READ_SIZE` bytes, and the kernel copies them straight into the ``bytes``
the store gets: one copy, off the loop.

When the body has been read to its end, the parser (which never saw those bytes) is
replaced by a fresh one, the request is marked complete and reading resumes, so the
connection stays usable for the next request. A body not read to its end (the client
left, went silent, or sent more than the handler wanted) closes the connection after
the answer: what is left in the socket can no longer be told apart from a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

__all__ = [
    "EXTENSION",
    "READ_SIZE",
    "DirectBody",
    "SocketBody",
    "claimed_bodies",
    "offered_socket_body",
]

# The ASGI scope extension under which the protocol offers the socket.
EXTENSION: Final = "videopick.socket_body"
# Bytes a read waits for (SO_RCVLOWAT) and returns at most: big enough that the
# per-read costs (a thread hop, a generator step) vanish, small enough to overlap with
# the store's writes.
READ_SIZE: Final = 1024 * 1024
# Bodies shorter than this are not worth a thread: the loop reads them as usual.
MIN_DIRECT: Final = 2 * READ_SIZE
# Bodies claimed at once, a thread each; past this, bodies go through the loop as
# usual (a silent client holds its thread for the read timeout).
MAX_READERS: Final = 64
# Reads the thread may be ahead of the handler (READ_SIZE each).
READ_AHEAD: Final = 4
_POLL_EVENTS: Final = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
# Longest wait in poll() between looks at whether the body was released.
_POLL_SLICE_S: Final = 0.25
_Read = TypeVar("_Read", bytes, int)


class _Claims:
    """How many bodies are claimed and not released (changed on the event loop only)."""

    active = 0


class BodyHost(Protocol):
    """What the HTTP protocol does for a claim (``gateway/http_protocol.py``)."""

    def claim_socket_body(self, length: int) -> tuple[list[bytes], int, int] | None:
        """Stop reading; (the parsed chunks not yet received, bytes still in the
        socket, the socket's descriptor), or None when the request cannot be claimed."""
        ...

    def release_socket_body(self, *, complete: bool) -> None:
        """Reading resumes after a body read to its end; otherwise the connection is
        closed after the answer."""
        ...


class SocketBody:
    """Offered in the scope of a request with a Content-Length, for one claim."""

    __slots__ = ("_claimed", "_host", "length")

    def __init__(self, host: BodyHost, length: int) -> None:
        self._host = host
        self.length = length
        self._claimed = False

    def claim(self, timeout_s: float, *, read_ahead: bool = True) -> DirectBody | None:
        """The body, read on a thread, which gives up after ``timeout_s`` seconds
        without a byte; None when the usual ``receive`` should be used (a small body,
        too many readers, or the request is over already).

        With ``read_ahead`` a thread of the body's own reads it ahead for
        :meth:`DirectBody.read`; without, the caller's worker thread reads it with
        :meth:`DirectBody.readinto`, straight into its own buffers."""
        if self._claimed or self.length < MIN_DIRECT or _Claims.active >= MAX_READERS:
            return None
        claimed = self._host.claim_socket_body(self.length)
        if claimed is None:
            return None
        self._claimed = True
        queued, remaining, fd = claimed
        _Claims.active += 1
        return DirectBody(
            queued, remaining, os.dup(fd), timeout_s, self._release, read_ahead=read_ahead
        )

    def _release(self, complete: bool) -> None:
        _Claims.active -= 1
        self._host.release_socket_body(complete=complete)


def claimed_bodies() -> int:
    """Bodies claimed and not yet released, in this process."""
    return _Claims.active


def offered_socket_body(scope: Any) -> SocketBody | None:
    """The request's :class:`SocketBody`, if its server offers one."""
    body = scope.get("extensions", {}).get(EXTENSION)
    return body if isinstance(body, SocketBody) else None


class DirectBody:
    """A claimed body: :attr:`queued` first, then the rest of it, in one of two ways.

    Read ahead (the default): one reader thread drains the socket ahead of the
    handler, up to :data:`READ_AHEAD` reads, and :meth:`read` takes finished chunks
    off a queue: the client's bytes keep flowing while the event loop is busy
    elsewhere. Otherwise the handler's worker thread calls :meth:`readinto` with its
    own buffer: no thread of ours, no hop through the loop, no copy on the way (the
    folder store's buffers for ``O_DIRECT`` writes).
    """

    def __init__(
        self,
        queued: list[bytes],
        remaining: int,
        fd: int,
        timeout_s: float,
        on_release: Callable[[bool], None],
        *,
        read_ahead: bool = True,
    ) -> None:
        self.queued = queued
        self.remaining = remaining  # not yet taken by the handler
        self._sock = socket.socket(fileno=fd)  # our duplicate: ours to close
        self._timeout_s = timeout_s
        self._on_release = on_release
        self._loop = asyncio.get_running_loop()
        self._arrived: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self._room = threading.Semaphore(READ_AHEAD)
        self._lock = threading.Lock()  # the descriptor's closing: by whoever is last
        self._reading = threading.Lock()  # held by a readinto() in progress
        self._lowat = 1
        self._pumping = False
        self._released = False
        self.read_ahead = read_ahead
        if read_ahead and remaining > 0:
            self._start_pump(remaining)

    def _start_pump(self, remaining: int) -> None:
        # A daemon thread of its own: one blocked on a silent client must not hold up
        # the process's exit (a pool's threads are joined at exit).
        self._pumping = True
        reader = threading.Thread(
            target=self._pump, args=(remaining,), name="socket-body", daemon=True
        )
        reader.start()

    async def read(self) -> bytes:
        """The next chunk of the body (b"" once it is all read).

        Raises EOFError when the client closed or reset the connection, TimeoutError
        when nothing came for the timeout given to the claim.
        """
        if self.remaining <= 0:
            return b""
        item = await self._arrived.get()
        if isinstance(item, Exception):
            self._arrived.put_nowait(item)  # every later read says the same
            raise item
        self._room.release()
        self.remaining -= len(item)
        return item

    def readinto(self, view: memoryview) -> int:
        """From a worker thread, without read-ahead: read the body's next bytes into
        ``view`` (up to its length; 0 once the body is all read).

        Blocks until ``view`` can be filled, or the body ends. Raises EOFError when the
        client closed or reset the connection, or the body was released meanwhile
        (the handler gave up), TimeoutError when nothing came for the claim's timeout.
        """
        if self.read_ahead:
            raise RuntimeError("readinto() is for a body claimed without read-ahead")
        with self._reading:
            if self._released:
                raise EOFError("the body was released")
            want = min(len(view), self.remaining)
            if want <= 0:
                return 0
            count = self._wait_and_read(
                self._sock.fileno(),
                want,
                lambda fd, size: os.readv(fd, [view[:size]]),
                stop=lambda: self._released,
            )
            self.remaining -= count
            return count

    # -- the reader thread ----------------------------------------------------------

    def _pump(self, remaining: int) -> None:
        try:
            fd = self._sock.fileno()
            while remaining > 0:
                if not self._released:
                    self._room.acquire()  # release() adds one, so this never waits forever
                want = min(remaining, READ_SIZE)
                data = self._wait_and_read(fd, want, os.read)
                remaining -= len(data)
                if not self._released:  # else drained and dropped (see release)
                    self._hand_over(data)
        except (EOFError, TimeoutError) as exc:
            self._hand_over(exc)
        except Exception as exc:  # never leave the handler waiting
            self._hand_over(EOFError(f"reading the body failed: {exc!r}"))
        finally:
            with self._lock:
                self._pumping = False
                if self._released:  # the handler is gone: closing is left to us
                    self._close()

    def _wait_and_read(
        self,
        fd: int,
        want: int,
        read: Callable[[int, int], _Read],
        stop: Callable[[], bool] = lambda: False,
    ) -> _Read:
        """``read(fd, want)`` once ``want`` bytes are there (or the body's end, or an
        error): the descriptor is non-blocking (asyncio's), so poll() waits first.
        Raises EOFError once ``stop()`` says so."""
        if want != self._lowat:
            # poll() wakes once this much is there (or at the end, or an error).
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
            self._lowat = want
        poller = select.poll()
        poller.register(fd, _POLL_EVENTS)
        deadline = time.monotonic() + self._timeout_s
        while True:
            left = deadline - time.monotonic()
            # In slices: a reader without read-ahead stops soon after a release.
            poller.poll(min(max(0.0, left), _POLL_SLICE_S) * 1000)
            try:
                data = read(fd, want)
            except BlockingIOError:
                if left <= 0:
                    raise TimeoutError(f"no body bytes for {self._timeout_s} s") from None
                if stop():
                    raise EOFError("the body was released") from None
                continue
            except OSError as exc:  # ECONNRESET and the like: the client is gone
                raise EOFError(str(exc)) from exc
            if not data:
                raise EOFError("the client closed the connection")
            return data

    def _hand_over(self, item: bytes | Exception) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._arrived.put_nowait, item)

    # -- the end --------------------------------------------------------------------

    def release(self) -> None:
        """On the event loop, once, when the handler is done with the body; never waits.

        A handler that stopped before the end (a body longer than it takes, an error)
        leaves the thread to read the rest and drop it, then close our descriptor:
        the connection closes after the answer, and it closes with a FIN, since the
        socket holds no unread bytes by then. Closed with bytes unread, the kernel
        would send a reset, and the client could lose the answer to it.
        """
        if self._released:
            return
        complete = self.remaining == 0
        with self._lock:
            self._released = True
            if not self.read_ahead and not complete:
                # Our own thread drains the rest, once the caller's read has stopped.
                self._start_drain()
            elif not self._pumping:
                self._close()
        self._room.release()  # a thread waiting for room goes on, to drain
        self._on_release(complete)

    def _start_drain(self) -> None:
        def drain() -> None:
            with self._reading:  # a readinto() still running stops at its next poll
                remaining = self.remaining
            self._pump(remaining)

        self._pumping = True
        threading.Thread(target=drain, name="socket-body-drain", daemon=True).start()

    def _close(self) -> None:
        with contextlib.suppress(OSError):  # the option is the socket's, shared
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self._sock.close()
