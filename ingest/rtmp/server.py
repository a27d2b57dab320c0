"""The asyncio transport around :class:`RTMPConnection`: sockets and clocks, nothing else.

The core enforces bytes (:mod:`ingest.rtmp.limits`); this layer enforces time:

- ``handshake_s``: from accept until the handshake is done (a truncated C1 or a
  1 byte/s slowloris ends here, RELIABILITY.md);
- ``setup_s``: from accept (or the end of a publish) until publishing starts, so a
  connection that trickles bytes but never publishes cannot stay forever;
- ``idle_s``: no byte from the peer for this long, at any time;
- ``write_s``: the peer stops reading what we send.

Events go to a :class:`ConnectionHandler`, which answers through the link
(``link.send(link.conn.accept_publish())``) and may close it. One task per
connection; an exception in one closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import structlog

from common.logs import get_logger
from ingest.rtmp.connection import RTMPConnection, State, Trigger
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import Closed, Event, NeedData
from ingest.rtmp.limits import DEFAULT_LIMITS, Limits

__all__ = ["CloseKind", "ConnectionHandler", "RTMPLink", "RTMPServer", "Timeouts"]

log = get_logger(__name__)

READ_SIZE: Final = 64 * 1024
# After a refusal we half-close and read (and drop) what the publisher still sends for
# this long: closing a socket with unread input sends an RST, which can destroy the
# onStatus we just wrote before the publisher reads it (a "lingering close").
LINGER_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    handshake_s: float = 10.0
    setup_s: float = 30.0
    idle_s: float = 30.0
    write_s: float = 10.0


class CloseKind(enum.Enum):
    PEER = "peer"  # the publisher closed (or reset) the connection
    TIMEOUT = "timeout"
    PROTOCOL_ERROR = "protocol-error"
    LOCAL = "local"  # the handler closed it (refused publish, stop request…)
    SHUTDOWN = "shutdown"
    INTERNAL_ERROR = "internal-error"


class ConnectionHandler(Protocol):
    async def handle(self, link: RTMPLink, event: Event) -> None: ...

    async def closed(self, link: RTMPLink, kind: CloseKind, detail: str) -> None: ...


class RTMPLink:
    """One TCP connection: its core, its streams, and why it ended."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        limits: Limits,
        timeouts: Timeouts,
    ) -> None:
        self.id = secrets.token_hex(4)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer_host: str = str(peer[0])
        self.peer_port: int = int(peer[1])
        self.timeouts = timeouts
        self.conn = RTMPConnection(limits, on_state_change=self._log_state)
        self._reader = reader
        self._writer = writer
        self.close_kind: CloseKind | None = None
        self.close_detail = ""
        self._lingering = False
        # Loop times for the watchdog (see _watch).
        self._accepted = self._setup_since = self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = ""

    def _log_state(self, old: State, new: State, trigger: Trigger) -> None:
        log.debug("rtmp state", old=old.value, new=new.value, trigger=trigger.value)

    def is_closing(self) -> bool:
        """A method, not a property: the answer changes across awaits."""
        return self.close_kind is not None

    def send(self, data: bytes) -> None:
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def close(self, kind: CloseKind, detail: str, *, linger: bool = False) -> None:
        """Close (idempotent): queued bytes are still flushed, then the socket closes.

        ``linger``: send FIN after the queued bytes but keep reading for up to
        :data:`LINGER_S`, so a publisher that is still sending reads our last onStatus
        instead of a connection reset.
        """
        if self.close_kind is not None:
            return
        self.close_kind, self.close_detail = kind, detail
        with contextlib.suppress(ProtocolError):
            self.send(self.conn.close())
        if linger and self._writer.can_write_eof() and not self._writer.is_closing():
            with contextlib.suppress(OSError):
                self._writer.write_eof()
                self._lingering = True
                return
        self._writer.close()

    async def _linger(self) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while await self._reader.read(READ_SIZE):
                    pass

    def _deadline(self) -> tuple[float, str]:
        """When this connection times out as things stand (loop time), and why."""
        timeouts = self.timeouts
        deadline, why = self._last_data + timeouts.idle_s, f"no data for {timeouts.idle_s:g} s"
        state = self.conn.state
        if state in (State.HANDSHAKE, State.HANDSHAKE_ACK):
            limit = self._accepted + timeouts.handshake_s
            if limit < deadline:
                deadline, why = limit, f"handshake not done within {timeouts.handshake_s:g} s"
        elif state is not State.PUBLISHING:
            limit = self._setup_since + timeouts.setup_s
            if limit < deadline:
                deadline, why = limit, f"not publishing within {timeouts.setup_s:g} s"
        return deadline, why

    def _watch(self) -> None:
        """The watchdog: one timer per connection, re-armed only when it fires.

        A timeout scope per read (``asyncio.timeout``) costs a timer handle, a heap push
        and a cancel for every few kilobytes; at 6 Mbit/s per publisher that was most of
        this layer's CPU. Reads only note the time; the timer looks when it is due.
        """
        loop = asyncio.get_running_loop()
        deadline, why = self._deadline()
        if deadline <= loop.time():
            self._timed_out = why
            # Wakes the pending read (or the next one) with the timeout.
            self._reader.set_exception(TimeoutError(why))
            return
        self._timer = loop.call_at(deadline, self._watch)

    async def run(self, handler: ConnectionHandler) -> None:
        loop = asyncio.get_running_loop()
        self._accepted = self._setup_since = self._last_data = loop.time()
        self._watch()
        kind, detail = CloseKind.PEER, "peer closed the connection"
        try:
            while self.close_kind is None:
                try:
                    data = await self._reader.read(READ_SIZE)
                except TimeoutError:
                    kind, detail = CloseKind.TIMEOUT, self._timed_out or "timed out"
                    break
                self._last_data = loop.time()
                if self.is_closing():
                    break
                self.conn.receive_data(data)
                if await self._drain_events(handler):
                    break
                if self.conn.state is State.PUBLISHING:
                    self._setup_since = loop.time()
                await self._flush()
        except ProtocolError as exc:
            kind, detail = CloseKind.PROTOCOL_ERROR, str(exc)
        except (ConnectionError, OSError) as exc:
            kind, detail = CloseKind.PEER, f"connection lost: {exc.__class__.__name__}"
        except Exception as exc:
            log.exception("rtmp connection failed")
            kind, detail = CloseKind.INTERNAL_ERROR, f"internal error: {exc.__class__.__name__}"
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.close(kind, detail)
            try:
                await handler.closed(self, self.close_kind or kind, self.close_detail)
            finally:
                if self._lingering:
                    await self._linger()
                self._writer.close()
                with contextlib.suppress(Exception):
                    await self._writer.wait_closed()

    async def _drain_events(self, handler: ConnectionHandler) -> bool:
        """Hand every buffered event to the handler; True when the connection is done."""
        while True:
            event = self.conn.next_event()
            self.send(self.conn.data_to_send())
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Closed):
                return True
            await handler.handle(self, event)
            if self.is_closing():
                return True

    async def _flush(self) -> None:
        if self._writer.transport.get_write_buffer_size():
            try:
                async with asyncio.timeout(self.timeouts.write_s):
                    await self._writer.drain()
            except TimeoutError:
                raise ConnectionError(
                    f"peer did not read for {self.timeouts.write_s:g} s"
                ) from None


HandlerFactory = Callable[[RTMPLink], ConnectionHandler]


class RTMPServer:
    """Accepts connections on ``host:port`` and runs one :class:`RTMPLink` per socket."""

    def __init__(
        self,
        handler_factory: HandlerFactory,
        *,
        host: str,
        port: int,
        limits: Limits = DEFAULT_LIMITS,
        timeouts: Timeouts = Timeouts(),
        max_connections: int = 1000,
        max_connections_per_host: int = 20,
        reuse_port: bool = False,
    ) -> None:
        self._handler_factory = handler_factory
        self.reuse_port = reuse_port
        self.host = host
        self.port = port
        self.limits = limits
        self.timeouts = timeouts
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.links: set[RTMPLink] = set()
        self._per_host: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self.port, reuse_address=True, reuse_port=self.reuse_port
        )
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])
        log.info("rtmp listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop accepting, close every connection, wait for their handlers to finish."""
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.close(CloseKind.SHUTDOWN, "server shutting down")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        link = RTMPLink(reader, writer, limits=self.limits, timeouts=self.timeouts)
        host = link.peer_host
        if (
            len(self.links) >= self.max_connections
            or self._per_host[host] >= self.max_connections_per_host
        ):
            log.warning("rtmp connection refused: too many connections", peer=host)
            writer.close()
            return
        structlog.contextvars.bind_contextvars(conn=link.id, peer=f"{host}:{link.peer_port}")
        self.links.add(link)
        self._per_host[host] += 1
        if task is not None:
            self._tasks.add(task)
        log.info("rtmp connection opened")
        try:
            await link.run(self._handler_factory(link))
        finally:
            self.links.discard(link)
            self._per_host[host] -= 1
            if self._per_host[host] <= 0:
                del self._per_host[host]
            if task is not None:
                self._tasks.discard(task)
            log.info(
                "rtmp connection closed",
                kind=(link.close_kind or CloseKind.PEER).value,
                detail=link.close_detail,
                bytes_in=link.conn.bytes_received,
            )
