"""The ingest server: RTMP publishers in, authorized publish sessions out to the packager.

Per connection, :class:`_Publisher` answers the RTMP core's events:

- connect: the application must be ``live`` (``rtmp://HOST:1935/live/{stream_key}``);
- publish: the address must not be locked out for bad keys; the key must pass the
  syntax gate (:mod:`ingest.auth`); its SHA-256 must match a channel's stored hash
  (:class:`~ingest.keys.KeyStore`, constant-time compare); the channel must not be
  cooling down after a stop request; no other publisher may hold it — in this process
  (``IngestServer.live``) or any other (:class:`~ingest.keys.PublisherLeases`). A
  publisher that has sent no media for ``takeover_idle_s`` is a half-open
  connection (the encoder's network dropped, its reconnect arrives before our idle
  timeout): the new publish replaces it as if it had timed out, so the packager
  continues the broadcast — here directly, in another process by asking it over NATS
  (:mod:`ingest.takeover`). Then the
  packager's sink is created (:mod:`ingest.media`, the seam) and the publish accepted.
  A bad key is answered ``NetStream.Publish.BadName`` after a delay and the connection
  closed;
- audio/video/metadata: through :class:`~ingest.session.PublishSession` to the sink; a
  codec we do not take is refused with ``NetStream.Publish.Rejected`` and its reason;
- the end (unpublish, disconnect, timeout, stop request, shutdown): the sink is closed
  with the reason, the lease released.

Process-wide, :class:`IngestServer` owns the listener, the live sessions by channel,
stop requests (``stream.stop_requested``: every ingest process hears it; the one holding
the publisher disconnects it) and a ticker that publishes ``stats.ingest`` for each
live session and renews its lease.

Log lines carry stream ids, session ids and addresses, never a stream key.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import structlog

from common.db import DatabaseUnavailable
from common.logs import get_logger
from common.settings import Settings
from events.catalog import StatsIngest
from events.envelope import Event, new_event_id
from ingest.auth import FailureThrottle, hash_key, key_syntax_problem
from ingest.keys import Channel, KeyStore, PublisherLeases
from ingest.media import CloseReason, SinkFactory, create_sink
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import (
    ConnectRequested,
    HandshakeCompleted,
    MediaMessage,
    MetaData,
    PublishRequested,
    StreamDeleted,
    UnhandledCommand,
)
from ingest.rtmp.events import Event as RTMPEvent
from ingest.rtmp.limits import DEFAULT_LIMITS, Limits
from ingest.rtmp.server import CloseKind, RTMPLink, RTMPServer, Timeouts
from ingest.session import PublishSession

__all__ = ["APP", "IngestConfig", "IngestServer", "StatsPublisher"]

log = get_logger(__name__)

APP: Final = "live"
BAD_NAME: Final = "NetStream.Publish.BadName"
REJECTED: Final = "NetStream.Publish.Rejected"
_REASON_BY_KIND: Final[dict[CloseKind, CloseReason]] = {
    CloseKind.PEER: "dropped",  # no unpublish first: the publisher may come back
    CloseKind.TIMEOUT: "timeout",
    CloseKind.PROTOCOL_ERROR: "error",
    CloseKind.INTERNAL_ERROR: "error",
    CloseKind.LOCAL: "error",
    CloseKind.SHUTDOWN: "shutdown",
}


class StatsPublisher(Protocol):
    """What ingest needs of :class:`events.publisher.EventPublisher`."""

    async def publish(self, event: Event, *, correlation_id: str = "") -> Any: ...


@dataclass(frozen=True, slots=True)
class IngestConfig:
    host: str = "127.0.0.1"
    port: int = 1935
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = DEFAULT_LIMITS
    max_connections: int = 1000
    max_connections_per_host: int = 20
    reuse_port: bool = False
    bad_key_delay_s: float = 1.0
    bad_key_limit: int = 5
    bad_key_window_s: float = 60.0
    bad_key_lockout_s: float = 300.0
    stop_cooldown_s: float = 15.0
    stats_interval_s: float = 5.0
    lease_ttl_s: float = 15.0
    # A publisher silent this long loses its channel to a new publish with the key
    # (well above frame spacing and encoder stalls, well below the idle timeout).
    takeover_idle_s: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestConfig:
        return cls(
            host=settings.rtmp_host,
            port=settings.rtmp_port,
            timeouts=Timeouts(
                handshake_s=settings.rtmp_handshake_timeout_s,
                setup_s=settings.rtmp_setup_timeout_s,
                idle_s=settings.rtmp_idle_timeout_s,
            ),
            max_connections=settings.rtmp_max_connections,
            max_connections_per_host=settings.rtmp_max_connections_per_host,
            reuse_port=settings.rtmp_reuse_port,
            bad_key_delay_s=settings.rtmp_bad_key_delay_s,
            bad_key_limit=settings.rtmp_bad_key_limit,
            bad_key_window_s=settings.rtmp_bad_key_window_s,
            bad_key_lockout_s=settings.rtmp_bad_key_lockout_s,
            stop_cooldown_s=settings.rtmp_stop_cooldown_s,
            stats_interval_s=settings.rtmp_stats_interval_s,
            lease_ttl_s=settings.rtmp_publisher_lease_s,
        )


class IngestServer:
    def __init__(
        self,
        config: IngestConfig,
        *,
        keys: KeyStore,
        leases: PublisherLeases,
        sink_factory: SinkFactory,
        stats: StatsPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_stop_requested: Callable[[str], Awaitable[Any]] | None = None,
        take_over: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        # Asks the other ingest processes to drop a silent publisher of the channel
        # (ingest/takeover.py); True once one did.
        self.take_over = take_over
        # The packager's stop_stream: ends a broadcast lingering for a reconnect.
        self.on_stop_requested = on_stop_requested
        self.keys = keys
        self.leases = leases
        self.sink_factory = sink_factory
        self.stats = stats
        self.clock = clock
        self.throttle = FailureThrottle(
            limit=config.bad_key_limit,
            window_s=config.bad_key_window_s,
            lockout_s=config.bad_key_lockout_s,
            clock=clock,
        )
        # Channels with a publisher in this process (reserved as soon as the key is
        # good, before the awaits that follow, so two racing publishes cannot both win).
        self.live: dict[str, _Publisher] = {}
        self._stopped_at: dict[str, float] = {}
        self._rtmp = RTMPServer(
            lambda link: _Publisher(self, link),
            host=config.host,
            port=config.port,
            limits=config.limits,
            timeouts=config.timeouts,
            max_connections=config.max_connections,
            max_connections_per_host=config.max_connections_per_host,
            reuse_port=config.reuse_port,
        )
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self._rtmp.port

    async def start(self) -> None:
        await self._rtmp.start()
        self._ticker = asyncio.create_task(self._tick_forever(), name="ingest-stats")

    async def stop(self) -> None:
        """Stop accepting, end every publish (sinks closed with "shutdown"), stop ticking."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self._rtmp.stop()

    # --- stop requests --------------------------------------------------------------

    async def stop_stream(self, stream_id: str, reason: str) -> bool:
        """``stream.stop_requested``: disconnect the channel's publisher if it is here."""
        now = self.clock()
        self._stopped_at[stream_id] = now
        for old in [s for s, at in self._stopped_at.items() if at < now - 3600]:
            del self._stopped_at[old]
        publisher = self.live.get(stream_id)
        if publisher is None:
            if self.on_stop_requested is not None:
                await self.on_stop_requested(stream_id)
            return False
        publisher.kick(reason)
        return True

    async def release_if_silent(self, stream_id: str) -> bool | None:
        """Another process has a publish of the channel: drop ours if it is half-open.
        None if the channel has no publisher here, False if ours still sends."""
        holder = self.live.get(stream_id)
        if holder is None or holder.session is None:  # none, or the asking publish itself
            return None
        if holder.idle_s() < self.config.takeover_idle_s:
            return False
        await holder.replace()
        return True

    def cooldown_left(self, stream_id: str) -> float:
        stopped = self._stopped_at.get(stream_id)
        if stopped is None:
            return 0.0
        return max(0.0, stopped + self.config.stop_cooldown_s - self.clock())

    # --- stats ----------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("stats tick failed")

    async def tick(self) -> None:
        """Publish ``stats.ingest`` for every live session here; renew their leases."""
        publishers = [p for p in list(self.live.values()) if p.session is not None]
        sessions = [p.session for p in publishers if p.session is not None]
        for session in sessions:
            stats = session.take_stats()
            if self.stats is None:
                continue
            event = StatsIngest(
                stream_id=session.stream_id,
                session_id=session.session_id,
                bitrate_kbps=stats.bitrate_kbps,
                fps=stats.fps,
                keyframe_interval_s=stats.keyframe_interval_s,
            )
            try:
                await self.stats.publish(event, correlation_id=session.session_id)
            except Exception as exc:
                log.warning(
                    "stats.ingest not published", stream_id=session.stream_id, error=repr(exc)
                )
        if sessions:
            try:
                leases = [p.lease_id for p in publishers if p.lease_id is not None]
                await self.leases.renew(leases, self.config.lease_ttl_s)
            except Exception as exc:
                log.warning("publisher leases not renewed", error=repr(exc))


class _Publisher:
    """One RTMP connection's ingest logic (an :class:`RTMPLink`'s handler)."""

    def __init__(self, server: IngestServer, link: RTMPLink) -> None:
        self.server = server
        self.link = link
        self.channel: Channel | None = None
        self.session: PublishSession | None = None
        self._reserved: str | None = None  # stream id held in server.live
        self._end_reason: CloseReason | None = None
        # This connection's lease (its own session id; the packager's broadcast id
        # differs after a reconnect).
        self.lease_id: str | None = None
        self._ended = asyncio.Event()

    # --- events ---------------------------------------------------------------------

    async def handle(self, link: RTMPLink, event: RTMPEvent) -> None:
        if isinstance(event, MediaMessage):  # the hot path first
            await self._on_media(event)
        elif isinstance(event, MetaData):
            if self.session is not None:
                await self.session.on_metadata(event.values)
        elif isinstance(event, PublishRequested):
            await self._on_publish(event)
        elif isinstance(event, ConnectRequested):
            self._on_connect(event)
        elif isinstance(event, StreamDeleted):
            if event.was_publishing:
                await self._end("publisher_left")
        elif isinstance(event, HandshakeCompleted):
            if not event.c2_verified:
                log.info("handshake C2 did not echo S1; tolerated", digest=event.digest)
        elif isinstance(event, UnhandledCommand):
            log.info("unsupported command answered with _error", command=event.name[:64])

    async def closed(self, link: RTMPLink, kind: CloseKind, detail: str) -> None:
        await self._end(self._end_reason or _REASON_BY_KIND[kind], detail)

    def _on_connect(self, event: ConnectRequested) -> None:
        conn = self.link.conn
        # OBS users often type "rtmp://host/live/" with a trailing slash.
        if event.app.rstrip("/") == APP:
            self.link.send(conn.accept_connect())
            return
        # The app name is not logged: a key pasted into the server URL would land there.
        log.warning("connect refused: unknown application", app_length=len(event.app))
        self.link.send(
            conn.reject_connect(
                "unknown application: publish to rtmp://HOST:1935/live with your stream key"
            )
        )
        self.link.close(CloseKind.LOCAL, "unknown application", linger=True)

    async def _on_publish(self, event: PublishRequested) -> None:
        server, link = self.server, self.link
        wait = server.throttle.retry_after(link.peer_host)
        if wait > 0:
            log.warning("publish refused: address locked out after bad keys")
            self._refuse(
                BAD_NAME,
                f"too many invalid stream keys from your address; retry in {math.ceil(wait)} s",
                "address locked out",
            )
            return
        problem = key_syntax_problem(event.name)
        channel: Channel | None = None
        if problem is None:
            try:
                channel = await server.keys.lookup(hash_key(event.name))
            except DatabaseUnavailable as exc:
                log.error("publish refused: key store unavailable", error=str(exc))
                self._refuse(REJECTED, "stream keys cannot be checked right now; retry", "db")
                return
            if channel is None:
                problem = "unknown stream key"
        if channel is None:
            server.throttle.record_failure(link.peer_host)
            log.warning("publish refused: bad stream key", reason=problem)
            await asyncio.sleep(server.config.bad_key_delay_s)
            self._refuse(BAD_NAME, "invalid stream key", "bad stream key")
            return
        server.throttle.record_success(link.peer_host)
        structlog.contextvars.bind_contextvars(stream_id=channel.stream_id)
        await self._start(event, channel)

    async def _start(self, event: PublishRequested, channel: Channel) -> None:
        server = self.server
        stream_id = channel.stream_id
        session_id = await self._claim(stream_id)
        if session_id is None:
            return
        self.channel = channel
        try:
            sink = await create_sink(server.sink_factory, stream_id, session_id, channel.user_id)
        except Exception:
            log.exception("publish refused: the packager could not start a session")
            await self._release_lease(stream_id, session_id)
            self.channel = None
            self._refuse(REJECTED, "the server could not start this stream; retry", "sink")
            return
        # A reconnect continues a broadcast the packager kept open: its stats and events
        # carry the broadcast's session id, the one the catalog knows.
        broadcast_id = getattr(sink, "broadcast_id", session_id)
        self.session = PublishSession(
            sink,
            stream_id=stream_id,
            session_id=broadcast_id if isinstance(broadcast_id, str) else session_id,
            user_id=channel.user_id,
            clock=server.clock,
        )
        self.lease_id = session_id
        if self.link.is_closing():  # closed while the sink was made: closed() ends it
            return
        self.link.send(self.link.conn.accept_publish())
        structlog.contextvars.bind_contextvars(session_id=session_id)
        kind = event.publish_type if event.publish_type in ("live", "record", "append") else "other"
        log.info("publish started", user_id=channel.user_id, publish_type=kind)

    async def _claim(self, stream_id: str) -> str | None:
        """Reserve the channel here and in the lease table; the new session id, or None."""
        server = self.server
        cooldown = server.cooldown_left(stream_id)
        if cooldown > 0:
            log.warning("publish refused: channel was stopped", retry_after_s=round(cooldown))
            self._refuse(
                REJECTED,
                f"this stream was stopped; publishing resumes in {math.ceil(cooldown)} s",
                "cooling down",
            )
            return None
        if not await self._free_here(stream_id):
            return None
        server.live[stream_id] = self
        self._reserved = stream_id
        session_id = new_event_id()
        try:
            claimed = await server.leases.claim(stream_id, session_id, server.config.lease_ttl_s)
            if not claimed and server.take_over is not None and await server.take_over(stream_id):
                claimed = await server.leases.claim(
                    stream_id, session_id, server.config.lease_ttl_s
                )
        except Exception as exc:
            log.error("publish refused: lease store unavailable", error=repr(exc))
            self._refuse(REJECTED, "publishing is unavailable right now; retry", "db")
            return None
        if not claimed:
            log.warning("publish refused: channel already has a publisher elsewhere")
            self._refuse(BAD_NAME, "already publishing: this channel has a publisher", "busy")
            return None
        if self.link.is_closing():  # closed while the lease was claimed
            await self._release_lease(stream_id, session_id)
            self._refuse(REJECTED, "closed", "closed")
            return None
        return session_id

    async def _free_here(self, stream_id: str) -> bool:
        """No publisher of the channel in this process (a silent one is replaced)."""
        server = self.server
        holder = server.live.get(stream_id)
        if holder is not None and holder.idle_s() >= server.config.takeover_idle_s:
            await holder.replace()
            holder = server.live.get(stream_id)
        if holder is not None:
            log.warning("publish refused: channel already has a publisher here")
            self._refuse(BAD_NAME, "already publishing: this channel has a publisher", "busy")
            return False
        return not self.link.is_closing()

    def _refuse(self, code: str, description: str, detail: str) -> None:
        if self._reserved is not None and self.session is None:
            self.server.live.pop(self._reserved, None)
            self._reserved = None
        if self.link.is_closing():  # closed while we awaited (shutdown, stop request)
            return
        self.link.send(self.link.conn.reject_publish(code, description))
        self.link.close(CloseKind.LOCAL, f"publish refused: {detail}", linger=True)

    async def _on_media(self, event: MediaMessage) -> None:
        session = self.session
        if session is None:
            return
        try:
            await session.on_media(event)
        except ProtocolError as exc:
            # Unsupported codec or a malformed tag: tell the publisher why, then close.
            log.warning("publish refused: bad media", reason=str(exc))
            self.link.send(self.link.conn.send_status(event.stream_id, "error", REJECTED, str(exc)))
            self._end_reason = "error"
            self.link.close(CloseKind.LOCAL, f"bad media: {exc}", linger=True)

    def idle_s(self) -> float:
        """Seconds since this publisher last sent media (0 while it is being set up)."""
        session = self.session
        return 0.0 if session is None else self.server.clock() - session.last_media_at

    async def replace(self, timeout_s: float = 5.0) -> None:
        """Drop this silent connection for a new publish of the channel; its end counts
        as a timeout (the broadcast waits for the newcomer to continue it)."""
        log.warning("silent publisher replaced by a new publish", idle_s=round(self.idle_s(), 1))
        self._end_reason = "timeout"
        self.link.close(CloseKind.TIMEOUT, "replaced by a new publish of the channel")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout_s)

    def kick(self, reason: str) -> None:
        """Disconnect this publisher (``stream.stop_requested``)."""
        log.info("stopping publisher on request", reason=reason[:64])
        stream_id = self.link.conn.publishing_stream
        if stream_id is not None and not self.link.is_closing():
            self.link.send(
                self.link.conn.send_status(
                    stream_id, "error", "NetConnection.Connect.Closed", f"stream stopped ({reason})"
                )
            )
        self._end_reason = "stop_requested"
        self.link.close(CloseKind.LOCAL, f"stop requested: {reason}", linger=True)

    # --- the end --------------------------------------------------------------------

    async def _end(self, reason: CloseReason, detail: str = "") -> None:
        try:
            await self._finish(reason, detail)
        finally:
            self._ended.set()

    async def _finish(self, reason: CloseReason, detail: str) -> None:
        session, self.session = self.session, None
        if self._reserved is not None and self.server.live.get(self._reserved) is self:
            del self.server.live[self._reserved]
        self._reserved = None
        if session is None:
            return
        try:
            await session.close(reason)
        except Exception:
            log.exception("the packager failed to close its session")
        await self._release_lease(session.stream_id, self.lease_id or session.session_id)
        log.info(
            "publish ended",
            reason=reason,
            detail=detail,
            duration_s=round(self.server.clock() - session.started_at, 1),
            video_frames=session.video_frames,
            audio_frames=session.audio_frames,
            dropped_before_config=session.dropped_before_config,
            clock_rebased=session.timeline_rebased,
        )

    async def _release_lease(self, stream_id: str, session_id: str) -> None:
        try:
            await self.server.leases.release(stream_id, session_id)
        except Exception as exc:  # it lapses on its own after lease_ttl_s
            log.warning("publisher lease not released", error=repr(exc))
