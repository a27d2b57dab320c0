"""One publisher connection: the media sink the RTMP server feeds, and what it sets off.

    RTMP server ──sink calls──▶ SessionSink ──feed──▶ Packager (same event loop)
                                                            │ outputs
    JetStream ◀──event── publish task (event loop) ◀────────┘
                              └──put──▶ object store

- The sink's methods stamp the call with its arrival time and feed the sans-IO
  :class:`~ingest.packager.packager.Packager` at once, on the event loop. It is pure
  Python (a few µs a frame), so a worker thread only moved it under the same GIL —
  and handing every frame to a thread and waking it was the ingest's largest cost
  (24 to 29 % of a process at 20 streams, issue #4). Only outputs (a part every
  ~0.5 s) cross to the publish task.
- One asyncio task per session stores each output and then publishes its event, in
  order: an event always names durable media (DESIGN.md "Media lands in the object
  store"). ``stream.started`` follows the init segment, ``stream.part`` each part,
  ``stream.segment`` each segment, ``stream.ended`` the close, ``stream.recorded``
  the recording.
- A failing or full store never stops the session (RELIABILITY.md, OvenMediaEngine
  #734): the object is skipped with a log line and no event is published for it, so
  there is never an event for missing media nor a 0-byte object. A part that could not
  be stored within a few target durations is dropped rather than published late.
- The connection belongs to a :class:`~ingest.packager.broadcast.Broadcast`; what
  happens when it closes (the broadcast ends, or lingers for a reconnect) is
  :class:`~ingest.packager.live.LivePackaging`'s call. Parts the playlist no longer
  lists are deleted as segments close (:mod:`ingest.packager.retention`).
- Every ``thumbnail_interval_s`` one keyframe becomes the stream's JPEG
  (:mod:`ingest.packager.thumbnail`), rendered on a worker thread and stored from a
  task of its own: thumbnails never wait in line with parts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from common.logs import get_logger
from common.store import StoreError
from events.catalog import StreamPart, StreamSegment, StreamStarted, StreamThumbnail
from events.envelope import Event
from ingest.packager import keys
from ingest.packager.broadcast import Broadcast
from ingest.packager.packager import (
    AudioConfig,
    AudioFrame,
    Close,
    Command,
    Finished,
    InitReady,
    Metadata,
    Output,
    Packager,
    PartReady,
    Resume,
    SegmentReady,
    VideoConfig,
    VideoFrame,
)
from ingest.packager.recording import StoredSegment
from ingest.packager.thumbnail import ThumbnailError

if TYPE_CHECKING:
    from ingest.packager.live import LivePackaging

log = get_logger(__name__)

# The types the stores already assume for these suffixes (common/store/_localfs.py), so
# the folder store writes no content-type sidecar per part. The gateway sets its own.
INIT_CONTENT_TYPE = "video/mp4"
SEGMENT_CONTENT_TYPE = "video/iso.segment"
# A part must be durable quickly or it is useless to a low-latency player.
PART_PUT_TIMEOUT_S = 2.0
SEGMENT_PUT_TIMEOUT_S = 10.0
SEGMENT_PUT_ATTEMPTS = 3
INIT_PUT_ATTEMPTS = 3
RETRY_DELAY_S = 0.5


THUMBNAIL_PUT_TIMEOUT_S = 5.0


def _content_type(key: str) -> str:
    if key.endswith(".jpg"):
        return "image/jpeg"
    return INIT_CONTENT_TYPE if key.endswith(".mp4") else SEGMENT_CONTENT_TYPE


class Publisher(Protocol):
    """What :class:`events.publisher.EventPublisher` offers (await the PubAck)."""

    def publish(self, event: Event, *, correlation_id: str = "") -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class PartTiming:
    """Measured for every published part (the benchmark and metrics read these)."""

    stream_id: str
    sequence: int
    index: int
    latency_s: float  # from the part's last frame entering the sink to its event acked
    stored_s: float  # … to the object being durable


PartObserver = Callable[[PartTiming], None]


class SessionSink:
    """The media sink of one connection (``ingest.media.MediaSink``; methods return None).

    ``session_id`` is the connection's (the server's publish session);
    ``broadcast_id`` names the broadcast it feeds — the first connection's session id,
    which a reconnect keeps.
    """

    def __init__(
        self,
        owner: LivePackaging,
        broadcast: Broadcast,
        session_id: str,
        resume_from: Future[Resume] | None = None,
    ) -> None:
        self.stream_id = keys.check_id("stream_id", broadcast.stream_id)
        self.session_id = keys.check_id("session_id", session_id)
        self.user_id = broadcast.user_id
        self.broadcast = broadcast
        self._owner = owner
        self._store = owner.store
        self._log = log.bind(
            stream_id=broadcast.stream_id, session_id=broadcast.session_id, connection=session_id
        )
        self._resume_from = resume_from
        self._packager: Packager | None = None
        # Where this connection left the broadcast: set by the packager thread at Close.
        self.position: Future[Resume] = Future()
        self._loop = asyncio.get_running_loop()
        # Commands held until the dropped connection's position is known (a reconnect).
        self._held: list[Command] = []
        self._outbox: asyncio.Queue[list[Output]] = asyncio.Queue()
        self._closed = False
        self.close_reason: str | None = None
        self._done_callbacks: list[Callable[[], None]] = []
        self._avcc = b""
        self._thumbnail_due = 0.0  # monotonic; the first keyframe makes one at once
        self._thumbnail_busy = False
        self._thumbnail_failures = 0
        self._task = self._loop.create_task(self._publish_outputs(), name=f"live-{session_id}")
        self._task.add_done_callback(lambda _task: self._on_done())
        if resume_from is None:
            self._start_packager(None)
        else:
            # A reconnect continues where the dropped connection's packager stopped: it
            # knows once it has taken its Close (commands are held meanwhile).
            resume_from.add_done_callback(self._resume_known)

    @property
    def task(self) -> asyncio.Task[None]:
        """Stores and publishes this connection's outputs; done after its last one."""
        return self._task

    @property
    def broadcast_id(self) -> str:
        return self.broadcast.session_id

    # -- the sink interface (event loop; returns at once) ------------------------------

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        self._put(Metadata(metadata))

    def on_video_config(self, avcc: bytes) -> None:
        self._avcc = bytes(avcc)
        self._put(VideoConfig(self._avcc))

    def on_audio_config(self, asc: bytes) -> None:
        self._put(AudioConfig(bytes(asc)))

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        now = time.monotonic()
        data = bytes(avcc_nalus)
        self._put(VideoFrame(dts_ms, cts_ms, keyframe, data, now, time.time()))
        if keyframe and not self._closed:
            self._maybe_thumbnail(now, data)

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        self._put(AudioFrame(dts_ms, bytes(raw_aac), time.monotonic(), time.time()))

    def close(self, reason: str) -> None:
        if not self._closed:
            self._put(Close(reason))
            self._closed = True
            self.close_reason = reason

    @property
    def closed(self) -> bool:
        return self._closed

    def crash_resume(self) -> Resume | None:
        """Where another process continues if this one dies now (shared while live):
        after the segment being cut, whose parts may be out but which will never be
        stored; mfhd numbers well past any that part could have used."""
        if self._packager is None:
            return None
        at = self._packager.position()
        offset_s = sum(s.duration_s for s in self.broadcast.segments)
        return Resume(at.sequence + 1, offset_s, at.fragment_sequence + 1000, at.part_target_s)

    async def wait_closed(self) -> None:
        """Until this connection's outputs are handled: after ``stream.ended`` and
        ``stream.recorded`` when it ended the broadcast; once the broadcast lingers
        when it dropped (``LivePackaging.wait_ended`` waits for the end then)."""
        await asyncio.shield(self._task)

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        if self._task.done():
            callback()
        else:
            self._done_callbacks.append(callback)

    def _put(self, command: Command) -> None:
        if self._closed:
            return
        if self._packager is None:
            self._held.append(command)
        else:
            self._feed(self._packager, command)

    def _on_done(self) -> None:
        for callback in self._done_callbacks:
            callback()

    # -- the packager (event loop) ---------------------------------------------------

    def _resume_known(self, position: Future[Resume]) -> None:
        # Set where the predecessor took its Close: on the loop, unless another thread did.
        try:
            resume = position.result()
        except Exception:  # its packager never started: begin at the broadcast's start
            resume = None
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._start_packager, resume)

    def _start_packager(self, resume: Resume | None) -> None:
        try:
            packager = Packager(self._owner.config, self._log, resume)
        except Exception:  # a packager bug must not take the ingest down
            self._log.exception("packager failed to start; this connection is not packaged")
            fallback = Resume(0, 0.0, 0, self._owner.config.part_target_s)
            self.position.set_result(resume or fallback)
            self._closed = True  # nothing more to hold
            self._outbox.put_nowait([Finished(self.close_reason or "error", 0.0, 0)])
            return
        self._packager = packager
        held, self._held = self._held, []
        for command in held:
            self._feed(packager, command)

    def _feed(self, packager: Packager, command: Command) -> None:
        try:
            outputs = packager.feed(command)
        except Exception:  # a packager bug must not take the ingest down
            self._log.exception("packager failed on a command; skipped")
            outputs = []
            if isinstance(command, Close):
                position = packager.position()
                outputs = [Finished(command.reason, position.offset_s, 0)]
        if isinstance(command, Close):
            self.position.set_result(packager.position())
        if outputs:
            self._outbox.put_nowait(outputs)

    # -- storing and publishing (event loop) -----------------------------------------

    async def _publish_outputs(self) -> None:
        while True:
            outputs = await self._outbox.get()
            for output in outputs:
                try:
                    if isinstance(output, InitReady):
                        await self._on_init(output)
                    elif isinstance(output, PartReady):
                        await self._on_part(output)
                    elif isinstance(output, SegmentReady):
                        await self._on_segment(output)
                    else:
                        await self._owner.connection_finished(self, output)
                        return
                except Exception:
                    self._log.exception("live output failed", output=type(output).__name__)
                    if isinstance(output, Finished):
                        return

    async def put_object(
        self, key: str, data: bytes, *, timeout_s: float, attempts: int, durable: bool = True
    ) -> bool:
        if not data:
            return False  # never a 0-byte object
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.wait_for(
                    self._store.put(key, data, content_type=_content_type(key), durable=durable),
                    timeout_s,
                )
            except (StoreError, OSError, TimeoutError) as exc:
                self._log.warning(
                    "live object not stored",
                    object_key=key,
                    attempt=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                )
                if attempt < attempts:
                    await asyncio.sleep(RETRY_DELAY_S)
            else:
                return True
        return False

    async def publish(self, event: Event, publisher: Publisher | None = None) -> bool:
        publisher = publisher or self._owner.publisher
        try:
            await publisher.publish(event, correlation_id=self.broadcast_id)
        except Exception as exc:
            self._log.error(
                "live event not published", event_type=event.event_type(), error=repr(exc)
            )
            return False
        return True

    async def _on_init(self, init: InitReady) -> None:
        broadcast = self.broadcast
        if broadcast.init is not None:
            # A reconnect: the broadcast's init segment (and stream.started) stand.
            if init.data != broadcast.init:
                self._log.warning(
                    "codec configuration changed across a reconnect; the broadcast keeps "
                    "the first (as it does for a change mid-stream)"
                )
            await self._ensure_started()
            return
        key = keys.init_key(self.stream_id, self.broadcast_id)
        if not await self.put_object(
            key, init.data, timeout_s=SEGMENT_PUT_TIMEOUT_S, attempts=INIT_PUT_ATTEMPTS
        ):
            self._log.error("init segment not stored; this broadcast is not playable")
            return
        broadcast.init = init.data
        broadcast.started_event = StreamStarted(
            stream_id=self.stream_id,
            session_id=self.broadcast_id,
            user_id=self.user_id,
            video_codec=init.video_codec,
            audio_codec=init.audio_codec,
            width=init.width,
            height=init.height,
            fps=init.fps,
            init_key=key,
            part_target_s=init.part_target_s,
            # The longest a segment may be once rounded: EXT-X-TARGETDURATION.
            segment_target_s=float(init.target_duration_s),
        )
        await self._ensure_started()

    async def _ensure_started(self) -> bool:
        """Publish ``stream.started`` if the init is stored and it is not out yet (a bus
        outage at the start is retried before every later output)."""
        broadcast = self.broadcast
        if not broadcast.started and broadcast.started_event is not None:
            broadcast.started = await self.publish(broadcast.started_event)
        return broadcast.started

    async def _on_part(self, part: PartReady) -> None:
        if not await self._ensure_started():
            return
        # Stale after three target durations: a player no longer asks for it (§6.2.2).
        stale_s = 3 * self._owner.config.target_duration_s
        if time.monotonic() - part.last_arrival_s > stale_s:
            self._log.warning("part too late to be useful; dropped", sequence=part.sequence)
            return
        key = keys.part_key(self.stream_id, self.broadcast_id, part.sequence, part.index)
        # Parts are transient (deleted once the playlist drops them; the segment holds the
        # same media durably): no fsync, which at 50 streams was most of the disk's wait.
        if not await self.put_object(
            key, part.data, timeout_s=PART_PUT_TIMEOUT_S, attempts=1, durable=False
        ):
            return
        stored_s = time.monotonic() - part.last_arrival_s
        published = await self.publish(
            StreamPart(
                stream_id=self.stream_id,
                session_id=self.broadcast_id,
                sequence=part.sequence,
                part_index=part.index,
                duration_s=part.duration_s,
                object_key=key,
                byte_size=len(part.data),
                independent=part.independent,
                discontinuity=part.discontinuity,
            ),
            self._owner.part_publisher,
        )
        if published and self._owner.on_part is not None:
            latency_s = time.monotonic() - part.last_arrival_s
            self._owner.on_part(
                PartTiming(self.stream_id, part.sequence, part.index, latency_s, stored_s)
            )

    async def _on_segment(self, segment: SegmentReady) -> None:
        if not await self._ensure_started():
            return
        broadcast = self.broadcast
        expired = broadcast.retention.add_segment(
            segment.sequence, segment.duration_s, segment.part_count
        )
        if expired:
            self._owner.drop_parts(broadcast, expired)
        key = keys.segment_key(self.stream_id, self.broadcast_id, segment.sequence)
        if not await self.put_object(
            key, segment.data, timeout_s=SEGMENT_PUT_TIMEOUT_S, attempts=SEGMENT_PUT_ATTEMPTS
        ):
            return
        broadcast.stored_segments += 1
        broadcast.segments.append(
            StoredSegment(
                segment.sequence, segment.duration_s, segment.discontinuity, len(segment.data)
            )
        )
        broadcast.segment_stored.set()  # the shared record's keeper writes it meanwhile
        await self.publish(
            StreamSegment(
                stream_id=self.stream_id,
                session_id=self.broadcast_id,
                sequence=segment.sequence,
                duration_s=segment.duration_s,
                object_key=key,
                byte_size=len(segment.data),
                keyframe=segment.independent,
                part_count=segment.part_count,
                program_date_time=segment.program_date_time,
                discontinuity=segment.discontinuity,
            )
        )

    # -- thumbnails (event loop + the renderer's thread) -------------------------------

    def _maybe_thumbnail(self, now: float, keyframe: bytes) -> None:
        interval = self._owner.thumbnail_interval_s
        if interval <= 0 or self._thumbnail_busy or now < self._thumbnail_due or not self._avcc:
            return
        if self._owner.thumbnails.busy:  # another stream's decode: try the next keyframe
            return
        self._thumbnail_busy = True
        self._thumbnail_due = now + interval
        self._owner.spawn(self._make_thumbnail(self._avcc, keyframe))

    async def _make_thumbnail(self, avcc: bytes, keyframe: bytes) -> None:
        try:
            try:
                thumbnail = await self._owner.thumbnails.render(avcc, keyframe)
            except ThumbnailError as exc:
                self._thumbnail_failures += 1
                if self._thumbnail_failures == 1:
                    self._log.warning("live thumbnail not made", error=str(exc))
                return
            key = keys.thumbnail_key(self.stream_id)
            if await self.put_object(
                key, thumbnail.jpeg, timeout_s=THUMBNAIL_PUT_TIMEOUT_S, attempts=1
            ):
                await self.publish(
                    StreamThumbnail(
                        stream_id=self.stream_id,
                        session_id=self.broadcast_id,
                        object_key=key,
                        width=thumbnail.width,
                        height=thumbnail.height,
                        byte_size=len(thumbnail.jpeg),
                    ),
                    self._owner.part_publisher,
                )
        finally:
            self._thumbnail_busy = False
