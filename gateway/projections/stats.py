"""Live statistics: viewers, peak, ingest bitrate/fps, uptime, chat rate — from events.

Every gateway process keeps its own small in-memory aggregate (no shared memory, no
database writes on this hot path) fed by two ephemeral, ack-none readers of the log
(raw nats-py; FastStream would add ~90 µs per message, NOTES.md):

- ``STATS``: ``stats.viewers`` and ``stats.ingest``, from the start of the oldest live
  session (or the last minute), so a freshly started process has the same numbers;
- ``CHAT``: ``chat.accepted``, from one chat window ago.

Times are the NATS server's store timestamps, one clock for every producer, so two
processes that have read the same log compute the same numbers: the viewer total and
the peak are computed at each event's own time, never at arrival time.

Uptime, the live flag and the session come from the catalog projection (the channel
row), not from here.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.logs import get_logger
from events.catalog import ChatAccepted, StatsIngest, StatsViewers
from events.publisher import EventPublisher
from events.streams import CHAT, STATS
from gateway.projections._reader import LogReader, reraise_if_cancelled
from gateway.projections.reducer import ChannelRow

__all__ = [
    "LiveStats",
    "StatsAggregator",
    "StatsFeed",
    "ViewerReporter",
    "default_gateway_id",
    "live_stats",
]

log = get_logger(__name__)

# A gateway's count stands for this long; one that stopped reporting (crashed,
# scaled down) drops out after it. Gateways report every few seconds.
VIEWERS_WINDOW_S: Final = 15.0
# Ingest measures every few seconds; older than this, the publisher is gone or stuck.
INGEST_STALE_S: Final = 15.0
CHAT_WINDOW_S: Final = 60.0
# STATS keeps a day (events/streams.py): no session's history reaches further back.
MAX_LOOKBACK_S: Final = 24 * 3600.0
PRUNE_EVERY_S: Final = 30.0


class LiveStats(msgspec.Struct, kw_only=True):
    """One channel's live numbers (all 0 while offline, except the chat rate)."""

    stream_id: str
    live: bool
    session_id: str | None
    started_at: dt.datetime | None
    viewers: int
    peak_viewers: int
    bitrate_kbps: float
    fps: float
    keyframe_interval_s: float = 0.0  # the publisher's GOP, measured by ingest
    uptime_s: float
    chat_per_minute: int


@dataclass
class _Channel:
    gateways: dict[str, tuple[float, int]] = field(default_factory=dict)  # id → (ts, count)
    # (ts, total) with ts increasing and total strictly decreasing: the max over
    # "ts >= since" is the first entry at or after `since` (see StatsAggregator.peak).
    peaks: list[tuple[float, int]] = field(default_factory=list)
    ingest: tuple[float, str, float, float, float] | None = None  # ts, session, kbps, fps, gop
    chat: deque[float] = field(default_factory=deque)
    last_ts: float = 0.0


class StatsAggregator:
    """The in-memory aggregate; pure (timestamps in, numbers out), unit-tested alone."""

    def __init__(
        self,
        *,
        viewers_window_s: float = VIEWERS_WINDOW_S,
        ingest_stale_s: float = INGEST_STALE_S,
        chat_window_s: float = CHAT_WINDOW_S,
    ) -> None:
        self.viewers_window_s = viewers_window_s
        self.ingest_stale_s = ingest_stale_s
        self.chat_window_s = chat_window_s
        self._channels: dict[str, _Channel] = {}

    def _channel(self, stream_id: str, ts: float) -> _Channel:
        channel = self._channels.get(stream_id)
        if channel is None:
            channel = self._channels[stream_id] = _Channel()
        channel.last_ts = max(channel.last_ts, ts)
        return channel

    # --- events ---------------------------------------------------------------

    def on_viewers(self, stream_id: str, gateway_id: str, viewers: int, ts: float) -> None:
        channel = self._channel(stream_id, ts)
        previous = channel.gateways.get(gateway_id)
        if previous is None or ts >= previous[0]:
            channel.gateways[gateway_id] = (ts, max(viewers, 0))
        total = self._total(channel, ts)
        peaks = channel.peaks
        if peaks and ts < peaks[-1][0]:
            ts = peaks[-1][0]  # the server's clock stepped back: keep the list sorted
        while peaks and peaks[-1][1] <= total:
            peaks.pop()  # an earlier, lower total can never be a later window's max
        peaks.append((ts, total))

    def on_ingest(
        self,
        stream_id: str,
        session_id: str,
        kbps: float,
        fps: float,
        ts: float,
        *,
        keyframe_interval_s: float = 0.0,
    ) -> None:
        channel = self._channel(stream_id, ts)
        if channel.ingest is None or ts >= channel.ingest[0]:
            channel.ingest = (ts, session_id, kbps, fps, keyframe_interval_s)

    def on_chat(self, stream_id: str, ts: float) -> None:
        chat = self._channel(stream_id, ts).chat
        if chat and ts < chat[-1]:
            ts = chat[-1]
        chat.append(ts)
        horizon = ts - self.chat_window_s
        while chat and chat[0] < horizon:
            chat.popleft()

    # --- numbers --------------------------------------------------------------

    def _total(self, channel: _Channel, at: float) -> int:
        horizon = at - self.viewers_window_s
        return sum(n for ts, n in channel.gateways.values() if horizon <= ts <= at)

    def viewers(self, stream_id: str, now: float) -> int:
        channel = self._channels.get(stream_id)
        return self._total(channel, now) if channel is not None else 0

    def peak(self, stream_id: str, since: float) -> int:
        """The highest viewer total seen at or after ``since`` (a session's start)."""
        channel = self._channels.get(stream_id)
        if channel is None:
            return 0
        index = bisect.bisect_left(channel.peaks, since, key=lambda entry: entry[0])
        return channel.peaks[index][1] if index < len(channel.peaks) else 0

    def ingest(self, stream_id: str, now: float, session_id: str | None) -> tuple[float, float]:
        """(kbit/s, fps) of the live session, or zeros when stale or another session's."""
        kbps, fps, _ = self.ingest_sample(stream_id, now, session_id)
        return kbps, fps

    def ingest_sample(
        self, stream_id: str, now: float, session_id: str | None
    ) -> tuple[float, float, float]:
        """(kbit/s, fps, keyframe interval s), or zeros when stale or another session's."""
        channel = self._channels.get(stream_id)
        if channel is None or channel.ingest is None:
            return 0.0, 0.0, 0.0
        ts, session, kbps, fps, gop = channel.ingest
        if now - ts > self.ingest_stale_s or (session_id is not None and session != session_id):
            return 0.0, 0.0, 0.0
        return kbps, fps, gop

    def chat_per_minute(self, stream_id: str, now: float) -> int:
        channel = self._channels.get(stream_id)
        if channel is None:
            return 0
        start = bisect.bisect_left(channel.chat, now - self.chat_window_s)
        end = bisect.bisect_right(channel.chat, now)
        return round((end - start) * 60.0 / self.chat_window_s)

    def prune(self, now: float) -> None:
        """Forget what no query can need any more (bounded memory)."""
        for stream_id in list(self._channels):
            channel = self._channels[stream_id]
            horizon = now - self.viewers_window_s
            channel.gateways = {g: v for g, v in channel.gateways.items() if v[0] >= horizon}
            cut = bisect.bisect_left(channel.peaks, now - MAX_LOOKBACK_S, key=lambda e: e[0])
            del channel.peaks[:cut]
            while channel.chat and channel.chat[0] < now - self.chat_window_s:
                channel.chat.popleft()
            if now - channel.last_ts > MAX_LOOKBACK_S:
                del self._channels[stream_id]


def live_stats(aggregator: StatsAggregator, channel: ChannelRow, now: dt.datetime) -> LiveStats:
    """Combine the catalog's view of a channel with this process's aggregate."""
    at = now.timestamp()
    live = channel.live and channel.started_at is not None
    chat = aggregator.chat_per_minute(channel.stream_id, at)
    if not live or channel.started_at is None:
        return LiveStats(
            stream_id=channel.stream_id,
            live=False,
            session_id=None,
            started_at=None,
            viewers=0,
            peak_viewers=0,
            bitrate_kbps=0.0,
            fps=0.0,
            uptime_s=0.0,
            chat_per_minute=chat,
        )
    kbps, fps, gop = aggregator.ingest_sample(channel.stream_id, at, channel.session_id)
    return LiveStats(
        stream_id=channel.stream_id,
        live=True,
        session_id=channel.session_id,
        started_at=channel.started_at,
        viewers=aggregator.viewers(channel.stream_id, at),
        peak_viewers=aggregator.peak(channel.stream_id, channel.started_at.timestamp()),
        bitrate_kbps=kbps,
        fps=fps,
        keyframe_interval_s=gop,
        uptime_s=max(0.0, (now - channel.started_at).total_seconds()),
        chat_per_minute=chat,
    )


# --- feeding it from the log -------------------------------------------------------

_STATS_DECODER: Final = msgspec.json.Decoder(StatsViewers | StatsIngest)
_CHAT_PREFIX: Final = ChatAccepted.event_type() + "."


def _store_time(msg: Msg) -> float:
    return msg.metadata.timestamp.timestamp()


class StatsFeed:
    """Feeds a :class:`StatsAggregator` from ``STATS`` and ``CHAT`` (see module doc)."""

    def __init__(
        self,
        js: JetStreamContext,
        aggregator: StatsAggregator,
        *,
        idle_timeout_s: float = 5.0,
        batch_size: int = 512,
    ) -> None:
        self.js = js
        self.aggregator = aggregator
        self._idle_timeout_s = idle_timeout_s
        self._batch_size = batch_size
        self._tasks: list[asyncio.Task[None]] = []
        # Checked by the loops as well as cancelling them: nats-py swallows a
        # cancellation that lands inside some of its calls (`_flush_pending`
        # catches CancelledError), and a loop must still end within one idle timeout.
        self._stopping = False
        # Per stream: the last sequence folded in (tests wait on it).
        self.positions: dict[str, int] = {}

    async def start(self, stats_since: dt.datetime) -> None:
        """``stats_since``: the start of the oldest live session (capped to a day)."""
        if self._tasks:
            return
        self._stopping = False
        now = dt.datetime.now(dt.UTC)
        stats_since = max(
            min(stats_since, now - dt.timedelta(seconds=CHAT_WINDOW_S)),
            now - dt.timedelta(seconds=MAX_LOOKBACK_S),
        )
        chat_since = now - dt.timedelta(seconds=self.aggregator.chat_window_s)
        # All of STATS is viewers and ingest samples: no filter (see _reader.py). CHAT
        # carries much else (messages, rejections, effects): one filter pays there.
        stats = self._reader(STATS.name, None, stats_since)
        chat = self._reader(CHAT.name, ChatAccepted.subject_filter(), chat_since)
        self._tasks = [
            asyncio.create_task(self._run(stats, self._on_stats), name="stats-feed:STATS"),
            asyncio.create_task(self._run(chat, self._on_chat), name="stats-feed:CHAT"),
        ]

    def _reader(self, stream: str, subject: str | None, since: dt.datetime) -> LogReader:
        return LogReader(
            self.js,
            stream,
            subject,
            start_time=since,
            batch_size=self._batch_size,
            idle_timeout_s=self._idle_timeout_s,
        )

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_stats(self, msg: Msg) -> None:
        try:
            event = _STATS_DECODER.decode(msg.data)
        except msgspec.MsgspecError as exc:
            log.warning("stats: undecodable event skipped", subject=msg.subject, error=str(exc))
            return
        ts = _store_time(msg)
        if isinstance(event, StatsViewers):
            self.aggregator.on_viewers(event.stream_id, event.gateway_id, event.viewers, ts)
        else:
            self.aggregator.on_ingest(
                event.stream_id,
                event.session_id,
                event.bitrate_kbps,
                event.fps,
                ts,
                keyframe_interval_s=event.keyframe_interval_s,
            )

    def _on_chat(self, msg: Msg) -> None:
        # The stream id is the subject's last token: no need to decode the message.
        if msg.subject.startswith(_CHAT_PREFIX):
            self.aggregator.on_chat(msg.subject[len(_CHAT_PREFIX) :], _store_time(msg))

    async def _run(self, reader: LogReader, handle: Callable[[Msg], None]) -> None:
        backoff = 0.5
        pruned = time.monotonic()
        try:
            while not self._stopping:
                try:
                    for msg in await reader.next_batch():
                        handle(msg)
                    self.positions[reader.stream] = reader.last_seq
                    backoff = 0.5
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    # NATS unreachable when opening: the next call opens again, after
                    # the last message read (or at the start time).
                    log.warning(
                        "stats feed failed, retrying", stream=reader.stream, error=repr(exc)
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                if time.monotonic() - pruned > PRUNE_EVERY_S:
                    self.aggregator.prune(time.time())
                    pruned = time.monotonic()
        finally:
            await asyncio.shield(reader.close())


# --- publishing this gateway's viewer count ----------------------------------------


def default_gateway_id() -> str:
    """Unique per process: two gateways on one host must not overwrite each other."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ViewerReporter:
    """``report_viewers``: what the HLS and chat code call every few seconds per stream.

    Report 0 once when the last viewer leaves; a gateway that stops reporting drops
    out of the total after ``VIEWERS_WINDOW_S`` anyway.
    """

    def __init__(self, publisher: EventPublisher, gateway_id: str | None = None) -> None:
        self._publisher = publisher
        self.gateway_id = gateway_id or default_gateway_id()

    async def report_viewers(self, stream_id: str, count: int) -> None:
        await self._publisher.publish(
            StatsViewers(stream_id=stream_id, gateway_id=self.gateway_id, viewers=max(count, 0))
        )
