"""One publish session: the media sink the RTMP server feeds, and what it sets off.

    RTMP server ──sink calls──▶ SessionSink ──queue──▶ packager thread (Packager)
                                                            │ outputs
    JetStream ◀──event── publish task (event loop) ◀────────┘
                              └──put──▶ object store

- The sink's methods only stamp the call with its arrival time and queue it: the
  event loop never does packaging work (STYLE.md: CPU work off the loop). One worker
  thread per session runs the sans-IO :class:`~ingest.packager.packager.Packager`.
- One asyncio task per session stores each output and then publishes its event, in
  order: an event always names durable media (DESIGN.md "Media lands in the object
  store"). ``stream.started`` follows the init segment, ``stream.part`` each part,
  ``stream.segment`` each segment, ``stream.ended`` the close, ``stream.recorded``
  the recording.
- A failing or full store never stops the session (RELIABILITY.md, OvenMediaEngine
  #734): the object is skipped with a log line and no event is published for it, so
  there is never an event for missing media nor a 0-byte object. A part that could not
  be stored within a few target durations is dropped rather than published late.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from common.logs import get_logger
from common.store import ObjectStore, StoreError
from events.catalog import (
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
)
from events.envelope import Event
from ingest.packager import keys
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
    PackagerConfig,
    PartReady,
    SegmentReady,
    VideoConfig,
    VideoFrame,
)
from ingest.packager.recording import build_recording, recording_video_id

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


def _content_type(key: str) -> str:
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


class LivePackaging:
    """Builds a :class:`SessionSink` per publish; hand ``create_session_sink`` to the server.

    ``publisher`` publishes lifecycle and segment events; ``part_publisher`` (default:
    the same) publishes ``stream.part`` — give it fewer retries, a late part is worth
    nothing.
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
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.part_publisher = part_publisher or publisher
        self.config = config or PackagerConfig()
        self.record = record
        self.on_part = on_part
        self._sessions: dict[str, SessionSink] = {}

    @property
    def sessions(self) -> dict[str, SessionSink]:
        """Sessions still packaging or publishing, by session id."""
        return dict(self._sessions)

    def create_session_sink(self, stream_id: str, session_id: str, user_id: str) -> SessionSink:
        """Called by the RTMP server on the event loop when a publish starts.

        ``session_id`` names the broadcast's objects: reusing a live one would overwrite
        them, so it is refused (ValueError; the server then refuses the publish).
        """
        if session_id in self._sessions:
            raise ValueError(f"session {session_id!r} is already being packaged")
        sink = SessionSink(self, stream_id, session_id, user_id)
        self._sessions[session_id] = sink
        sink.add_done_callback(lambda: self._forget(session_id))
        return sink

    def _forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def aclose(self, timeout_s: float = 30.0) -> None:
        """Close every open session and wait for their last events (ingest shutdown)."""
        sinks = list(self._sessions.values())
        for sink in sinks:
            sink.close("shutdown")  # a no-op for sinks the server already closed
        if sinks:
            await asyncio.wait_for(
                asyncio.gather(*(sink.wait_closed() for sink in sinks)), timeout_s
            )


class SessionSink:
    """The media sink of one publish (``ingest.media.MediaSink``; methods return None)."""

    def __init__(self, owner: LivePackaging, stream_id: str, session_id: str, user_id: str) -> None:
        self.stream_id = keys.check_id("stream_id", stream_id)
        self.session_id = keys.check_id("session_id", session_id)
        self.user_id = user_id
        self._owner = owner
        self._store = owner.store
        self._log = log.bind(stream_id=stream_id, session_id=session_id)
        self._packager = Packager(owner.config, self._log)
        self._loop = asyncio.get_running_loop()
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._outbox: asyncio.Queue[list[Output]] = asyncio.Queue()
        self._closed = False
        self._started = False
        self._started_event: StreamStarted | None = None  # init stored, event not yet acked
        self._stored_segments = 0
        self._done_callbacks: list[Callable[[], None]] = []
        self._thread = threading.Thread(
            target=self._run_packager, name=f"packager-{session_id[:12]}", daemon=True
        )
        self._thread.start()
        self._task = self._loop.create_task(self._publish_outputs(), name=f"live-{session_id}")
        self._task.add_done_callback(lambda _task: self._on_done())

    # -- the sink interface (event loop; returns at once) ------------------------------

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        self._put(Metadata(metadata))

    def on_video_config(self, avcc: bytes) -> None:
        self._put(VideoConfig(bytes(avcc)))

    def on_audio_config(self, asc: bytes) -> None:
        self._put(AudioConfig(bytes(asc)))

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        self._put(
            VideoFrame(dts_ms, cts_ms, keyframe, bytes(avcc_nalus), time.monotonic(), time.time())
        )

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        self._put(AudioFrame(dts_ms, bytes(raw_aac), time.monotonic(), time.time()))

    def close(self, reason: str) -> None:
        if not self._closed:
            self._put(Close(reason))
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        """Until the last event of the session (``stream.ended`` / ``stream.recorded``)."""
        await asyncio.shield(self._task)

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        if self._task.done():
            callback()
        else:
            self._done_callbacks.append(callback)

    def _put(self, command: Command) -> None:
        if not self._closed:
            self._commands.put(command)

    def _on_done(self) -> None:
        for callback in self._done_callbacks:
            callback()

    # -- the packager thread ---------------------------------------------------------

    def _run_packager(self) -> None:
        while True:
            command = self._commands.get()
            try:
                outputs = self._packager.feed(command)
            except Exception:  # a packager bug must not take the ingest down
                self._log.exception("packager failed on a command; skipped")
                outputs = []
                if isinstance(command, Close):
                    outputs = [Finished(command.reason, 0.0, self._packager.stats.segments)]
            if outputs:
                try:
                    self._loop.call_soon_threadsafe(self._outbox.put_nowait, outputs)
                except RuntimeError:  # the loop is gone (process shutting down)
                    return
            if isinstance(command, Close):
                return

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
                        await self._on_finished(output)
                        return
                except Exception:
                    self._log.exception("live output failed", output=type(output).__name__)
                    if isinstance(output, Finished):
                        return

    async def _put_object(self, key: str, data: bytes, *, timeout_s: float, attempts: int) -> bool:
        if not data:
            return False  # never a 0-byte object
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.wait_for(
                    self._store.put(key, data, content_type=_content_type(key)), timeout_s
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

    async def _publish(self, event: Event, publisher: Publisher | None = None) -> bool:
        publisher = publisher or self._owner.publisher
        try:
            await publisher.publish(event, correlation_id=self.session_id)
        except Exception as exc:
            self._log.error(
                "live event not published", event_type=event.event_type(), error=repr(exc)
            )
            return False
        return True

    async def _on_init(self, init: InitReady) -> None:
        key = keys.init_key(self.stream_id, self.session_id)
        if not await self._put_object(
            key, init.data, timeout_s=SEGMENT_PUT_TIMEOUT_S, attempts=INIT_PUT_ATTEMPTS
        ):
            self._log.error("init segment not stored; this broadcast is not playable")
            return
        self._started_event = StreamStarted(
            stream_id=self.stream_id,
            session_id=self.session_id,
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
        if not self._started and self._started_event is not None:
            self._started = await self._publish(self._started_event)
        return self._started

    async def _on_part(self, part: PartReady) -> None:
        if not await self._ensure_started():
            return
        # Stale after three target durations: a player no longer asks for it (§6.2.2).
        stale_s = 3 * self._owner.config.target_duration_s
        if time.monotonic() - part.last_arrival_s > stale_s:
            self._log.warning("part too late to be useful; dropped", sequence=part.sequence)
            return
        key = keys.part_key(self.stream_id, self.session_id, part.sequence, part.index)
        if not await self._put_object(key, part.data, timeout_s=PART_PUT_TIMEOUT_S, attempts=1):
            return
        stored_s = time.monotonic() - part.last_arrival_s
        published = await self._publish(
            StreamPart(
                stream_id=self.stream_id,
                session_id=self.session_id,
                sequence=part.sequence,
                part_index=part.index,
                duration_s=part.duration_s,
                object_key=key,
                byte_size=len(part.data),
                independent=part.independent,
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
        key = keys.segment_key(self.stream_id, self.session_id, segment.sequence)
        if not await self._put_object(
            key, segment.data, timeout_s=SEGMENT_PUT_TIMEOUT_S, attempts=SEGMENT_PUT_ATTEMPTS
        ):
            return
        self._stored_segments += 1
        await self._publish(
            StreamSegment(
                stream_id=self.stream_id,
                session_id=self.session_id,
                sequence=segment.sequence,
                duration_s=segment.duration_s,
                object_key=key,
                byte_size=len(segment.data),
                keyframe=segment.independent,
                part_count=segment.part_count,
                program_date_time=segment.program_date_time,
            )
        )

    async def _on_finished(self, finished: Finished) -> None:
        if not await self._ensure_started():
            self._log.info("publish ended before anything was playable", reason=finished.reason)
            return
        await self._publish(
            StreamEnded(
                stream_id=self.stream_id,
                session_id=self.session_id,
                reason=finished.reason,
                duration_s=finished.duration_s,
                segment_count=self._stored_segments,
            )
        )
        if self._owner.record and self._stored_segments:
            await self._record(finished.duration_s)

    async def _record(self, duration_s: float) -> None:
        try:
            built = await build_recording(self._store, self.stream_id, self.session_id)
        except (StoreError, OSError) as exc:
            self._log.error("recording not built", error=f"{type(exc).__name__}: {exc}")
            return
        if built is None:
            return
        key, size, segments = built
        video_id = recording_video_id(self.stream_id, self.session_id)
        self._log.info("recording stored", object_key=key, byte_size=size, segments=segments)
        await self._publish(
            StreamRecorded(
                stream_id=self.stream_id,
                session_id=self.session_id,
                user_id=self.user_id,
                video_id=video_id,
                object_key=key,
                duration_s=duration_s,
                byte_size=size,
            )
        )
