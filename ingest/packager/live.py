"""The ingest process's live packaging: a sink per connection, broadcasts across them.

:class:`LivePackaging` hands the RTMP server a :class:`~ingest.packager.session.SessionSink`
per publish and decides, when a connection closes, what becomes of its broadcast
(:mod:`ingest.packager.broadcast`):

- closed for good (unpublish, stop request, error, shutdown, or no reconnect window):
  ``stream.ended`` now, then the recording (``stream.recorded``, with the title and
  description the channel had when it ended), which is a video at once:
  ``vod/{video_id}/master.m3u8`` names the broadcast's ``recording.m3u8`` (its live
  segments, no copy) and ``video.published`` follows ``stream.recorded``. A transcode of
  the recording later overwrites that master with its ladder's and publishes the same
  video again;
- dropped (no unpublish) or timed out: the broadcast lingers ``reconnect_window_s``;
  a publish of the same channel meanwhile continues it (same session id, media
  sequence and decode times carrying on, EXT-X-DISCONTINUITY), otherwise it ends then.

A reconnect may land on any ingest process (one per core on a shared port, replicas):
with a :class:`~ingest.packager.handoff.BroadcastHandoff`, a lingering broadcast's
state is in JetStream KV and :meth:`LivePackaging.open_session_sink` continues it
wherever the publisher comes back; exactly one process ends a broadcast nobody came
back to, even when its owner crashed — while it lingered, or while the publisher was
still connected: a live broadcast's record is kept current after every stored
segment and on a heartbeat, in a task of its own (see that module).

Part objects leave the store once no playlist lists them (:mod:`.retention`), and
the rest of them a few target durations after the broadcast ends; segments stay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

import msgspec

from common.logs import get_logger
from common.store import ObjectNotFound, ObjectStore, StoreError
from events.catalog import StreamEnded, StreamRecorded, VideoPublished
from events.catalog.live import recording_video_id
from events.envelope import Event
from ingest.packager import keys
from ingest.packager.broadcast import RESUMABLE, Broadcast, ended_reason
from ingest.packager.handoff import (
    CHUNK_SEGMENTS,
    HEARTBEAT_S,
    ORPHAN_GRACE_S,
    OWNER_GONE_S,
    BroadcastHandoff,
    SegmentTuple,
    Shared,
    State,
    as_dropped,
    owner_gone,
)
from ingest.packager.packager import Finished, PackagerConfig, Resume
from ingest.packager.recording import (
    StoredSegment,
    Variant,
    build_recording,
    master_key,
    master_uri_of,
    poster_key,
    published_event_id,
    recording_master,
    vod_playlist,
)
from ingest.packager.retention import PartRetention
from ingest.packager.session import PartObserver, Publisher, SessionSink
from ingest.packager.thumbnail import ThumbnailRenderer

log = get_logger(__name__)

# (title, description) of a channel's broadcast, for its recording.
Describe = Callable[[str], Awaitable[tuple[str, str]]]

# How long a reconnect waits for another process to finish storing the dropped
# connection's last media (its record turns from "live" to "lingering").
HANDOFF_WAIT_S = 5.0
HANDOFF_POLL_S = 0.05
# How often each process looks for lingering broadcasts whose owner is gone.
ORPHAN_SWEEP_S = 5.0
# A "live record updates" log line (p50/p99 of the write) every this many writes.
RECORD_LOG_EVERY = 100


class LivePackaging:
    """Builds a :class:`SessionSink` per publish; hand ``create_session_sink`` to the server.

    ``publisher`` publishes lifecycle and segment events; ``part_publisher`` (default:
    the same) publishes ``stream.part`` and ``stream.thumbnail`` — give it fewer
    retries, a late part is worth nothing. ``describe`` looks up the title and
    description a recording is published with.
    """

    def __init__(
        self,
        store: ObjectStore,
        publisher: Publisher,
        *,
        config: PackagerConfig | None = None,
        part_publisher: Publisher | None = None,
        record: bool = True,
        on_part: PartObserver | None = None,
        reconnect_window_s: float = 0.0,
        thumbnail_interval_s: float = 0.0,
        describe: Describe | None = None,
        handoff: BroadcastHandoff | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.part_publisher = part_publisher or publisher
        self.config = config or PackagerConfig()
        self.record = record
        self.on_part = on_part
        self.reconnect_window_s = reconnect_window_s
        self.thumbnail_interval_s = thumbnail_interval_s
        self.describe = describe
        self.thumbnails = ThumbnailRenderer()
        self._sessions: dict[str, SessionSink] = {}
        # The newest broadcast of each channel seen here (one entry per channel).
        self._broadcasts: dict[str, Broadcast] = {}
        self._part_sweeps: dict[Broadcast, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._shutdown = asyncio.Event()
        self.handoff = handoff
        self._sweeper: asyncio.Task[None] | None = None
        self._adopted_sub: Any = None
        self._keepers: set[asyncio.Task[None]] = set()
        # Seconds per live-record update (the keeper's CAS write), newest last.
        self.record_updates: collections.deque[float] = collections.deque(maxlen=4096)
        self._record_writes = 0

    async def start(self) -> None:
        """With a hand-off: hear adopted notices and sweep orphaned broadcasts."""
        if self.handoff is None or self._sweeper is not None:
            return
        self._adopted_sub = await self.handoff.on_adopted(self._on_adopted)
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_orphans_forever(), name="live-orphan-sweep"
        )

    @property
    def sessions(self) -> dict[str, SessionSink]:
        """Connections still packaging or publishing, by session id."""
        return dict(self._sessions)

    def broadcast(self, stream_id: str) -> Broadcast | None:
        """The channel's newest broadcast (live, lingering, ending or ended)."""
        return self._broadcasts.get(stream_id)

    def create_session_sink(self, stream_id: str, session_id: str, user_id: str) -> SessionSink:
        """Called by the RTMP server on the event loop when a publish starts.

        ``session_id`` names a new broadcast's objects: reusing a live one would
        overwrite them, so it is refused (ValueError; the server then refuses the
        publish). A publish of a channel whose broadcast lingers continues it.
        """
        broadcast = self._broadcasts.get(stream_id)
        resume = broadcast is not None and broadcast.resumable(self.reconnect_window_s)
        return self._attach(stream_id, session_id, user_id, resume_local=resume)

    def _attach(
        self, stream_id: str, session_id: str, user_id: str, *, resume_local: bool
    ) -> SessionSink:
        """A sink continuing this process's broadcast of the channel, or a new one's."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already being packaged")
        broadcast = self._broadcasts.get(stream_id)
        newest = broadcast.newest if broadcast is not None else None
        if resume_local and broadcast is not None and newest is not None:
            if broadcast.linger is not None:
                broadcast.linger.cancel()
                broadcast.linger = None
            log.info(
                "publisher reconnected; the broadcast goes on",
                stream_id=stream_id,
                session_id=broadcast.session_id,
                connection=session_id,
                connections=len(broadcast.connections) + 1,
            )
            sink = SessionSink(self, broadcast, session_id, resume_from=newest.position)
        else:
            broadcast = Broadcast(
                stream_id, session_id, user_id, PartRetention(self.config.target_duration_s)
            )
            self._broadcasts[stream_id] = broadcast
            sink = SessionSink(self, broadcast, session_id)
        broadcast.connections.append(sink)
        self._sessions[session_id] = sink
        sink.add_done_callback(lambda: self._forget(session_id))
        return sink

    def _forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    # -- across ingest processes (ingest/packager/handoff.py) ----------------------------

    async def open_session_sink(self, stream_id: str, session_id: str, user_id: str) -> SessionSink:
        """The RTMP server's sink factory: :meth:`create_session_sink`, except that a
        broadcast lingering on ANY ingest process is continued here."""
        if self.handoff is None:
            return self.create_session_sink(stream_id, session_id, user_id)
        try:
            return await self._open_shared(self.handoff, stream_id, session_id, user_id)
        except Exception as exc:  # the bus is down: as if there were one process
            log.warning("broadcast hand-off unavailable", stream_id=stream_id, error=repr(exc))
            return self.create_session_sink(stream_id, session_id, user_id)

    async def _open_shared(
        self, handoff: BroadcastHandoff, stream_id: str, session_id: str, user_id: str
    ) -> SessionSink:
        deadline = time.monotonic() + HANDOFF_WAIT_S
        for _attempt in range(1000):  # a few at most: each lost CAS is another's progress
            got = await handoff.read(stream_id)
            local = self._broadcasts.get(stream_id)
            local_ok = local is not None and local.resumable(self.reconnect_window_s)
            if got is None:  # resume here only what was never shared (the bus failed)
                fallback = local_ok and local is not None and local.revision is None
                return await self._start_shared(handoff, stream_id, session_id, user_id, fallback)
            record, revision = got
            if record.owner != handoff.instance and owner_gone(record, time.time()):
                record = as_dropped(record)  # its process crashed while live
            mine = (
                local_ok
                and local is not None
                and record.owner == handoff.instance
                and local.session_id == record.session_id
                and record.state in ("live", "lingering")
            )
            # Its last media is being stored; or its owner may have just crashed (a
            # heartbeat, OWNER_GONE_S, tells which).
            waited = deadline + (OWNER_GONE_S if record.heartbeat else 0.0)
            if record.state == "live" and not mine and time.monotonic() < waited:
                await asyncio.sleep(HANDOFF_POLL_S)
                continue
            open_window = record.state == "lingering" and record.deadline > time.time()
            if self.reconnect_window_s > 0 and (mine or open_window):
                claim = msgspec.structs.replace(
                    record,
                    state="live",
                    owner=handoff.instance,
                    deadline=0.0,
                    heartbeat=time.time(),
                    window_s=self.reconnect_window_s,
                )
                claimed = await handoff.write(stream_id, claim, revision)
                if claimed is None:
                    continue  # another process claimed or ended it first: look again
                if mine and local is not None:
                    sink = self._attach(stream_id, session_id, user_id, resume_local=True)
                    local.revision = claimed
                    self._keep(local)
                    return sink
                return await self._adopt(handoff, record, claimed, stream_id, session_id)
            # A window that closed with its owner elsewhere not having ended it (gone,
            # or about to): end it before this new broadcast replaces its record.
            if (
                record.state == "lingering"
                and record.owner != handoff.instance
                and not await self._end_orphan(stream_id, record, revision, wait=False)
            ):
                continue
            return await self._start_shared(handoff, stream_id, session_id, user_id, False)
        raise RuntimeError("the channel's shared record kept changing")

    async def _start_shared(
        self,
        handoff: BroadcastHandoff,
        stream_id: str,
        session_id: str,
        user_id: str,
        resume_local: bool,
    ) -> SessionSink:
        sink = self._attach(stream_id, session_id, user_id, resume_local=resume_local)
        broadcast = sink.broadcast
        record = Shared(
            state="live",
            owner=handoff.instance,
            session_id=broadcast.session_id,
            user_id=broadcast.user_id,
            heartbeat=time.time(),
            window_s=self.reconnect_window_s,
        )
        try:
            broadcast.revision = await handoff.write(stream_id, record, None)
        except Exception as exc:  # the sink exists: this broadcast is then this process's
            log.warning("broadcast not shared", stream_id=stream_id, error=repr(exc))
        else:
            self._keep(broadcast)
        return sink

    async def _adopt(
        self,
        handoff: BroadcastHandoff,
        record: Shared,
        revision: int,
        stream_id: str,
        session_id: str,
    ) -> SessionSink:
        """Continue a broadcast another ingest process held (its record is ours now)."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already being packaged")
        segments = await handoff.segments(stream_id, record)
        broadcast = self._from_record(stream_id, record, revision, segments)
        if record.has_init:
            try:
                broadcast.init = await self.store.read(keys.init_key(stream_id, record.session_id))
            except (StoreError, OSError) as exc:  # the new connection stores it again
                log.warning("init segment of the broadcast not read", error=repr(exc))
        previous = self._broadcasts.get(stream_id)
        if previous is not None and previous.session_id == record.session_id:
            self._let_go(previous, "this process again")  # our stale copy of it
        self._broadcasts[stream_id] = broadcast
        resume: Future[Resume] = Future()
        if record.resume is not None:
            resume.set_result(Resume(*record.resume))
        else:
            resume.set_exception(LookupError("the broadcast had not started packaging"))
        sink = SessionSink(self, broadcast, session_id, resume_from=resume)
        broadcast.connections.append(sink)
        self._sessions[session_id] = sink
        sink.add_done_callback(lambda: self._forget(session_id))
        self._keep(broadcast)
        log.info(
            "publisher reconnected to another ingest process; the broadcast goes on here",
            stream_id=stream_id,
            session_id=record.session_id,
            connection=session_id,
            previous_owner=record.owner,
        )
        try:
            await handoff.announce_adopted(stream_id, record.session_id)
        except Exception as exc:  # the old owner's CAS at its deadline still fails
            log.warning("adopted notice not sent", stream_id=stream_id, error=repr(exc))
        return sink

    def _from_record(
        self, stream_id: str, record: Shared, revision: int, segments: list[SegmentTuple]
    ) -> Broadcast:
        """A broadcast as another process shared it (to continue it, or to end it);
        ``segments``: all of them, its sealed chunks' too."""
        return Broadcast(
            stream_id,
            record.session_id,
            record.user_id,
            PartRetention(self.config.target_duration_s),
            started_event=record.started_event,
            started=record.started,
            stored_segments=record.stored_segments,
            segments=[StoredSegment(*s) for s in segments],
            duration_s=record.duration_s,
            last_reason=record.reason,
            created_at=dt.datetime.fromtimestamp(record.created_at or time.time(), dt.UTC),
            revision=revision,
            shared_chunks=record.chunks,
        )

    async def _on_adopted(self, stream_id: str, session_id: str, by: str) -> None:
        """Another process continues the broadcast: no timer, no end here."""
        if self.handoff is None or by == self.handoff.instance:
            return
        broadcast = self._broadcasts.get(stream_id)
        if broadcast is None or broadcast.session_id != session_id or broadcast.ending:
            return
        self._let_go(broadcast, by)

    def _let_go(self, broadcast: Broadcast, by: str) -> None:
        if broadcast.handed_off:
            return
        broadcast.handed_off = True
        self._stop_keeping(broadcast)
        if broadcast.linger is not None and broadcast.linger is not asyncio.current_task():
            broadcast.linger.cancel()
        broadcast.linger = None
        if self._broadcasts.get(broadcast.stream_id) is broadcast:
            del self._broadcasts[broadcast.stream_id]
        log.info(
            "broadcast continued by another ingest process",
            stream_id=broadcast.stream_id,
            session_id=broadcast.session_id,
            by=by,
        )
        # Our parts the new owner's playlist still lists go once it no longer does.
        parts = broadcast.retention.remaining()
        if parts:
            self.spawn(self._drop_parts_later(broadcast, parts))
        broadcast.done.set()

    async def _drop_parts_later(self, broadcast: Broadcast, parts: list[tuple[int, int]]) -> None:
        with contextlib.suppress(TimeoutError):  # a shutdown deletes them at once
            await asyncio.wait_for(self._shutdown.wait(), broadcast.retention.keep_s)
        self.drop_parts(broadcast, parts)

    def _shared_record(
        self,
        broadcast: Broadcast,
        handoff: BroadcastHandoff,
        state: State,
        position: Resume | None,
    ) -> Shared:
        """The record of ``broadcast`` (its segments go in by :meth:`_write_shared`)."""
        resume = None
        if position is not None:
            resume = (
                position.sequence,
                position.offset_s,
                position.fragment_sequence,
                position.part_target_s,
            )
        now = time.time()
        live = state == "live"
        return Shared(
            state=state,
            owner=handoff.instance,
            session_id=broadcast.session_id,
            user_id=broadcast.user_id,
            deadline=0.0 if live else now + self.reconnect_window_s,
            reason=broadcast.last_reason,
            resume=resume,
            has_init=broadcast.init is not None,
            started_event=broadcast.started_event,
            started=broadcast.started,
            stored_segments=broadcast.stored_segments,
            # Live: what has been stored so far (the connection goes on).
            duration_s=sum(s.duration_s for s in broadcast.segments)
            if live
            else broadcast.duration_s,
            created_at=broadcast.created_at.timestamp(),
            heartbeat=now if live else 0.0,
            window_s=self.reconnect_window_s,
        )

    async def _write_shared(
        self, handoff: BroadcastHandoff, broadcast: Broadcast, record: Shared
    ) -> int | None:
        """CAS ``record`` with the broadcast's segments: full chunks sealed first (a
        reader never meets a record naming a chunk not yet written), the rest inline."""
        segments = broadcast.segments
        while (broadcast.shared_chunks + 1) * CHUNK_SEGMENTS <= len(segments):
            start = broadcast.shared_chunks * CHUNK_SEGMENTS
            chunk = [
                (s.sequence, s.duration_s, s.discontinuity, s.byte_size)
                for s in segments[start : start + CHUNK_SEGMENTS]
            ]
            await handoff.write_chunk(
                broadcast.stream_id, broadcast.session_id, broadcast.shared_chunks, chunk
            )
            broadcast.shared_chunks += 1
        tail = segments[broadcast.shared_chunks * CHUNK_SEGMENTS :]
        record.segments = [(s.sequence, s.duration_s, s.discontinuity, s.byte_size) for s in tail]
        record.chunks = broadcast.shared_chunks
        return await handoff.write(broadcast.stream_id, record, broadcast.revision)

    # -- the live record: kept current while the publisher is connected here ------------

    def _keep(self, broadcast: Broadcast) -> None:
        """Keep the broadcast's live record current until its connection ends here."""
        if self.handoff is None or broadcast.revision is None:
            return
        broadcast.live_shared = True
        if broadcast.keeper is None or broadcast.keeper.done():
            task = asyncio.get_running_loop().create_task(
                self._keep_shared(self.handoff, broadcast), name=f"keep-{broadcast.session_id}"
            )
            broadcast.keeper = task
            self._keepers.add(task)
            task.add_done_callback(self._keepers.discard)

    def _stop_keeping(self, broadcast: Broadcast) -> None:
        broadcast.live_shared = False
        broadcast.segment_stored.set()  # the keeper sees it at once

    async def _keep_shared(self, handoff: BroadcastHandoff, broadcast: Broadcast) -> None:
        """One write at a time: segments stored during a write go in the next one."""
        took: list[float] = []
        try:
            await self._keep_writing(handoff, broadcast, took)
        finally:
            if len(took) >= 2:
                cuts = statistics.quantiles(took, n=100)
                log.info(
                    "live record updates of the connection",
                    stream_id=broadcast.stream_id,
                    writes=len(took),
                    p50_ms=round(cuts[49] * 1000, 3),
                    p99_ms=round(cuts[98] * 1000, 3),
                    max_ms=round(max(took) * 1000, 3),
                )

    async def _keep_writing(
        self, handoff: BroadcastHandoff, broadcast: Broadcast, took: list[float]
    ) -> None:
        while broadcast.live_shared:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(broadcast.segment_stored.wait(), HEARTBEAT_S)
            broadcast.segment_stored.clear()
            async with broadcast.shared_lock:
                sink = broadcast.newest
                resume = sink.crash_resume() if sink is not None else None
                if not broadcast.live_shared or broadcast.revision is None or resume is None:
                    continue  # ended, or a continuation whose packager starts in a moment
                record = self._shared_record(broadcast, handoff, "live", resume)
                began = time.perf_counter()
                try:
                    written = await self._write_shared(handoff, broadcast, record)
                except Exception as exc:  # the bus is away: the next beat tries again
                    log.warning(
                        "live broadcast record not updated",
                        stream_id=broadcast.stream_id,
                        error=repr(exc),
                    )
                    continue
                if written is None:  # someone else owns the key: as for any lost CAS,
                    # the end of this connection finds out who (_claim_end).
                    log.warning(
                        "live broadcast record taken by another process",
                        stream_id=broadcast.stream_id,
                        session_id=broadcast.session_id,
                    )
                    broadcast.live_shared = False
                    return
                broadcast.revision = written
                took.append(time.perf_counter() - began)
                self._note_record_update(took[-1], len(record.segments))

    def _note_record_update(self, seconds: float, inline_segments: int) -> None:
        self.record_updates.append(seconds)
        self._record_writes += 1
        if self._record_writes % RECORD_LOG_EVERY == 0:
            cuts = statistics.quantiles(self.record_updates, n=100)
            log.info(
                "live record updates",
                writes=self._record_writes,
                p50_ms=round(cuts[49] * 1000, 3),
                p99_ms=round(cuts[98] * 1000, 3),
                inline_segments=inline_segments,
            )

    async def _share_lingering(self, broadcast: Broadcast, sink: SessionSink) -> None:
        """Put the lingering broadcast where every ingest process can continue it."""
        handoff = self.handoff
        if handoff is None or broadcast.revision is None:
            return
        position = sink.position.result() if sink.position.done() else None
        record = self._shared_record(broadcast, handoff, "lingering", position)
        try:
            async with broadcast.shared_lock:
                written = await self._write_shared(handoff, broadcast, record)
        except Exception as exc:  # it lingers here only
            log.warning(
                "lingering broadcast not shared", stream_id=broadcast.stream_id, error=repr(exc)
            )
            broadcast.revision = None
            return
        if written is None:  # continued meanwhile: whoever did holds the revision
            log.info("lingering broadcast's record moved on", stream_id=broadcast.stream_id)
            return
        broadcast.revision = written

    async def _claim_end(self, broadcast: Broadcast) -> bool:
        """May this process end the broadcast? (CAS of its record to "ending".)

        Lost to a record of the same broadcast: another process continues or ends it
        (or this one continued it) — let it go. Lost to another broadcast's record (a
        new publish replaced a record it thought abandoned): ours, so end it here."""
        handoff = self.handoff
        self._stop_keeping(broadcast)
        if handoff is None or broadcast.revision is None:
            return True
        async with broadcast.shared_lock:  # after the keeper's write in flight, if any
            return await self._claim_end_shared(handoff, broadcast)

    async def _claim_end_shared(self, handoff: BroadcastHandoff, broadcast: Broadcast) -> bool:
        stream_id = broadcast.stream_id
        if broadcast.revision is None:
            return True
        try:
            got = await handoff.read(stream_id)
            if got is not None and got[1] == broadcast.revision:
                ending = msgspec.structs.replace(got[0], state="ending", owner=handoff.instance)
                written = await handoff.write(stream_id, ending, broadcast.revision)
                if written is not None:
                    broadcast.revision = written
                    return True
                got = await handoff.read(stream_id)
        except Exception as exc:  # the bus is down: end it here, as one process would
            log.warning("broadcast end not coordinated", stream_id=stream_id, error=repr(exc))
            return True
        if got is None or got[0].session_id == broadcast.session_id:
            if got is None or got[0].owner != handoff.instance:
                self._let_go(broadcast, got[0].owner if got else "(ended elsewhere)")
            return False
        broadcast.revision = None  # the record is the new broadcast's: leave it be
        return True

    async def _forget_shared(self, broadcast: Broadcast) -> None:
        if self.handoff is not None and broadcast.revision is not None:
            await self.handoff.forget(broadcast.stream_id, broadcast.revision)
        if self.handoff is not None and broadcast.shared_chunks:
            await self.handoff.forget_chunks(
                broadcast.stream_id, broadcast.session_id, broadcast.shared_chunks
            )

    async def _sweep_orphans_forever(self) -> None:
        while True:
            await asyncio.sleep(ORPHAN_SWEEP_S)
            try:
                await self.sweep_orphans()
            except Exception as exc:
                log.warning("orphaned broadcasts not swept", error=repr(exc))

    async def sweep_orphans(self, grace_s: float = ORPHAN_GRACE_S) -> int:
        """End lingering broadcasts whose window closed ``grace_s`` ago and whose owner
        did not end them (it crashed); how many this process ended."""
        handoff = self.handoff
        if handoff is None or self._closing:
            return 0
        ended = 0
        for stream_id, record, revision in await handoff.expired(grace_s):
            ended += await self._end_orphan(stream_id, record, revision, wait=True)
        return ended

    async def _end_orphan(
        self, stream_id: str, record: Shared, revision: int, *, wait: bool
    ) -> bool:
        """End another process's lingering broadcast if the CAS to "ending" wins."""
        handoff = self.handoff
        assert handoff is not None
        ending = msgspec.structs.replace(record, state="ending", owner=handoff.instance)
        written = await handoff.write(stream_id, ending, revision)
        if written is None:
            return False  # its owner or another process got there first
        log.warning(
            "ending a broadcast its ingest process left lingering",
            stream_id=stream_id,
            session_id=record.session_id,
            owner=record.owner,
        )
        segments = await handoff.segments(stream_id, record)
        broadcast = self._from_record(stream_id, record, written, segments)
        if wait:
            await self.end_broadcast(broadcast)
        else:
            self.spawn(self.end_broadcast(broadcast))
        return True

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run background work (thumbnails, part deletion) owned by this object."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Until the background work started so far (thumbnails, deletions) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- a connection's end ------------------------------------------------------------

    async def connection_finished(self, sink: SessionSink, finished: Finished) -> None:
        """The connection's packager is done: end its broadcast, or let it linger."""
        broadcast = sink.broadcast
        if broadcast.newest is not sink:
            return  # the publisher is already back on a newer connection
        self._stop_keeping(broadcast)
        broadcast.duration_s = max(broadcast.duration_s, finished.duration_s)
        broadcast.last_reason = finished.reason
        if finished.reason in RESUMABLE and self.reconnect_window_s > 0 and not self._closing:
            log.info(
                "publisher dropped; waiting for a reconnect",
                stream_id=broadcast.stream_id,
                session_id=broadcast.session_id,
                reason=finished.reason,
                window_s=self.reconnect_window_s,
            )
            await self._share_lingering(broadcast, sink)
            if broadcast.newest is not sink or broadcast.handed_off:
                return  # continued meanwhile (here or elsewhere)
            broadcast.linger = asyncio.get_running_loop().create_task(
                self._linger(broadcast), name=f"linger-{broadcast.session_id}"
            )
            return
        if await self._claim_end(broadcast):
            await self.end_broadcast(broadcast)

    async def _linger(self, broadcast: Broadcast) -> None:
        await asyncio.sleep(self.reconnect_window_s)
        if not await self._claim_end(broadcast):
            return  # another process continued it, or ended it
        broadcast.linger = None
        await self.end_broadcast(broadcast)

    async def stop_stream(self, stream_id: str) -> bool:
        """``stream.stop_requested``: a broadcast waiting for its publisher ends now (a
        publish after the stop must not resume what the owner stopped). True if one did."""
        broadcast = self._broadcasts.get(stream_id)
        if broadcast is None or broadcast.linger is None:
            return False
        broadcast.linger.cancel()
        broadcast.linger = None
        broadcast.last_reason = "stop_requested"
        if not await self._claim_end(broadcast):
            return False
        await self.end_broadcast(broadcast)
        return True

    async def wait_ended(self, stream_id: str, timeout_s: float) -> None:
        """Until the channel's newest broadcast has ended (tests and shutdown)."""
        broadcast = self._broadcasts.get(stream_id)
        if broadcast is not None:
            await asyncio.wait_for(broadcast.done.wait(), timeout_s)

    async def end_broadcast(self, broadcast: Broadcast) -> None:
        """``stream.ended``, then the recording; once per broadcast."""
        if broadcast.ending:
            return
        broadcast.ending = True  # before any await: a publish now starts a new broadcast
        try:
            current = asyncio.current_task()
            # Older connections may still be storing their last outputs.
            others = [s.wait_closed() for s in broadcast.connections if s.task is not current]
            await asyncio.gather(*others, return_exceptions=True)
            await self._announce_end(broadcast)
        finally:
            broadcast.done.set()
            with contextlib.suppress(Exception):
                await self._forget_shared(broadcast)
            self._part_sweeps[broadcast] = asyncio.get_running_loop().create_task(
                self._sweep_parts_later(broadcast)
            )

    async def _publish(self, broadcast: Broadcast, event: Event) -> bool:
        try:
            await self.publisher.publish(event, correlation_id=broadcast.session_id)
        except Exception as exc:
            log.error(
                "live event not published",
                stream_id=broadcast.stream_id,
                event_type=event.event_type(),
                error=repr(exc),
            )
            return False
        return True

    async def _announce_end(self, broadcast: Broadcast) -> None:
        if not broadcast.started:
            log.info(
                "publish ended before anything was playable",
                stream_id=broadcast.stream_id,
                reason=broadcast.last_reason,
            )
            return
        await self._publish(
            broadcast,
            StreamEnded(
                stream_id=broadcast.stream_id,
                session_id=broadcast.session_id,
                reason=ended_reason(broadcast.last_reason),
                duration_s=broadcast.duration_s,
                segment_count=broadcast.stored_segments,
            ),
        )
        if self.record and broadcast.stored_segments:
            await self._record(broadcast)

    async def _record(self, broadcast: Broadcast) -> None:
        stream_id, session_id = broadcast.stream_id, broadcast.session_id
        try:
            built = await build_recording(self.store, stream_id, session_id)
        except (StoreError, OSError) as exc:
            log.error("recording not built", stream_id=stream_id, error=f"{exc!r}")
            return
        if built is None:
            return
        key, size, segments = built
        playlist_key = keys.recording_playlist_key(stream_id, session_id)
        playlist = vod_playlist(broadcast.segments, self.config.target_duration_s)
        try:
            await self.store.put(
                playlist_key, playlist.encode(), content_type="application/vnd.apple.mpegurl"
            )
        except (StoreError, OSError) as exc:  # the single-file recording still stands
            log.error("recording playlist not stored", stream_id=stream_id, error=f"{exc!r}")
            playlist_key = ""
        video_id = recording_video_id(stream_id, session_id)
        master = await self._store_master(broadcast, video_id, playlist_key) if playlist_key else ""
        title, description = await self._describe(stream_id)
        log.info(
            "recording stored",
            stream_id=stream_id,
            object_key=key,
            byte_size=size,
            segments=segments,
            video_id=video_id,
        )
        recorded = await self._publish(
            broadcast,
            StreamRecorded(
                stream_id=stream_id,
                session_id=session_id,
                user_id=broadcast.user_id,
                video_id=video_id,
                object_key=key,
                duration_s=broadcast.duration_s,
                byte_size=size,
                title=title,
                description=description,
                playlist_key=playlist_key,
            ),
        )
        if recorded and master:
            started = broadcast.started_event
            poster = await self._store_poster(broadcast, video_id)
            await self._publish(
                broadcast,
                VideoPublished(
                    event_id=published_event_id(video_id),
                    video_id=video_id,
                    user_id=broadcast.user_id,
                    title=title,
                    description=description,
                    duration_s=broadcast.duration_s,
                    master_key=master,
                    poster_key=poster,
                    width=started.width if started else 0,
                    height=started.height if started else 0,
                    origin="recording",
                    stream_id=stream_id,
                ),
            )

    async def _store_master(self, broadcast: Broadcast, video_id: str, playlist_key: str) -> str:
        """``vod/{video_id}/master.m3u8`` naming the recording's VOD playlist; its key, or
        "" if it could not be stored (the recording then waits for the transcode)."""
        started = broadcast.started_event
        codecs = (
            ",".join(c for c in (started.video_codec, started.audio_codec) if c) if started else ""
        )
        variant = Variant(
            width=started.width if started else 0,
            height=started.height if started else 0,
            fps=started.fps if started else 0.0,
            codecs=codecs,
        )
        text = recording_master(broadcast.segments, variant, master_uri_of(playlist_key))
        key = master_key(video_id)
        try:
            await self.store.put(key, text.encode(), content_type="application/vnd.apple.mpegurl")
        except (StoreError, OSError) as exc:
            log.error("recording master not stored", video_id=video_id, error=f"{exc!r}")
            return ""
        return key

    async def _store_poster(self, broadcast: Broadcast, video_id: str) -> str:
        """The channel's live thumbnail as the recording's poster, if this broadcast made
        it (not a previous one's); its key, or "" (the transcode makes a poster later)."""
        source = keys.thumbnail_key(broadcast.stream_id)
        try:
            info = await self.store.stat(source)
            # Store clocks may keep whole seconds only.
            if info.last_modified < broadcast.created_at.replace(microsecond=0):
                return ""
            key = poster_key(video_id)
            await self.store.put(key, await self.store.read(source), content_type="image/jpeg")
        except ObjectNotFound:
            return ""
        except (StoreError, OSError) as exc:  # a poster is a nicety
            log.warning("recording poster not stored", video_id=video_id, error=f"{exc!r}")
            return ""
        return key

    async def _describe(self, stream_id: str) -> tuple[str, str]:
        if self.describe is None:
            return "", ""
        try:
            return await asyncio.wait_for(self.describe(stream_id), 5.0)
        except Exception as exc:  # the recording is worth more than its title
            log.warning("broadcast title not found", stream_id=stream_id, error=repr(exc))
            return "", ""

    # -- part retention ------------------------------------------------------------------

    def drop_parts(self, broadcast: Broadcast, parts: list[tuple[int, int]]) -> None:
        """Delete parts no playlist lists any more (in the background)."""
        names = [
            keys.part_key(broadcast.stream_id, broadcast.session_id, seq, i) for seq, i in parts
        ]
        self.spawn(self._delete(names))

    async def _delete(self, object_keys: list[str]) -> None:
        for key in object_keys:
            try:
                await self.store.delete(key)
            except (StoreError, OSError) as exc:  # a leftover part costs only space
                log.warning("live part not deleted", object_key=key, error=repr(exc))

    async def _sweep_parts_later(self, broadcast: Broadcast, delay: bool = True) -> None:
        """Every part object left, once an ENDLIST playlist (no parts) has replaced the
        last one that listed them."""
        try:
            if delay:
                await asyncio.sleep(broadcast.retention.keep_s)
            prefix = keys.session_prefix(broadcast.stream_id, broadcast.session_id)
            names = [
                info.key
                async for info in self.store.list(prefix)
                if keys.PART_NAME.fullmatch(info.key[len(prefix) :])
            ]
            await self._delete(names)
        except (StoreError, OSError) as exc:
            log.warning("live parts not swept", session_id=broadcast.session_id, error=repr(exc))
        finally:
            self._part_sweeps.pop(broadcast, None)

    # -- shutdown ------------------------------------------------------------------------

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Close every connection, end every broadcast now (lingering ones too), sweep
        their parts, and wait for the last events (ingest shutdown)."""
        self._closing = True
        self._shutdown.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._adopted_sub is not None:
            with contextlib.suppress(Exception):
                await self._adopted_sub.unsubscribe()
            self._adopted_sub = None
        sinks = list(self._sessions.values())
        for sink in sinks:
            sink.close("shutdown")  # a no-op for sinks the server already closed
        async with asyncio.timeout(timeout_s):
            if sinks:
                await asyncio.gather(*(sink.wait_closed() for sink in sinks))
            for broadcast in list(self._broadcasts.values()):
                if broadcast.linger is not None:
                    broadcast.linger.cancel()
                    broadcast.linger = None
                    if not await self._claim_end(broadcast):
                        continue  # another process continues it
                await self.end_broadcast(broadcast)
                await broadcast.done.wait()  # also one another task was ending
            sweeps = list(self._part_sweeps.items())
            for _broadcast, task in sweeps:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.gather(*(self._sweep_parts_later(b, delay=False) for b, _ in sweeps))
            for keeper in list(self._keepers):  # stopped by the ends above; none is left
                keeper.cancel()
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.thumbnails.close()
