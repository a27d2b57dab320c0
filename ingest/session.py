"""One accepted publish: FLV tag bodies → :class:`~ingest.media.MediaSink` calls, plus stats.

No I/O of its own: the ingest server feeds it RTMP events and awaits it (so a slow
sink slows the socket, not memory). What it guarantees the sink is written in
:mod:`ingest.media`; how:

- codecs: only H.264 and AAC pass (:mod:`ingest.flv` refuses the rest with the text
  the publisher is told); sequence headers are parsed before they are handed on, and
  frames that arrive before their sequence header are dropped (counted);
- time: :class:`StreamClock` undoes the 2^32 wrap per track and keeps each track
  non-decreasing; when the publisher's clock jumps back by more than
  :data:`BACKWARD_JUMP_MS` (an encoder restart), the whole stream is rebased forward
  by one shared offset, so audio and video stay together;
- stats: bytes, video frames and keyframe spacing since the last
  :meth:`PublishSession.take_stats`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from common.logs import get_logger
from ingest.flv import (
    AACPacketType,
    AudioSpecificConfig,
    AudioTagHeader,
    AVCDecoderConfigurationRecord,
    AVCPacketType,
    FrameType,
    VideoTagHeader,
)
from ingest.media import CloseReason, MediaSink, settle
from ingest.rtmp.chunks import TimestampUnwrapper
from ingest.rtmp.events import MediaMessage

__all__ = ["BACKWARD_JUMP_MS", "PublishSession", "StreamClock"]

log = get_logger(__name__)

# A step back bigger than this is a publisher clock reset, not audio/video jitter.
BACKWARD_JUMP_MS: Final = 1000


class StreamClock:
    """Per publish: one unwrapper per track, a shared forward offset, no going back."""

    __slots__ = ("_last", "_offset", "_unwrap", "rebased")

    def __init__(self) -> None:
        self._unwrap = {"audio": TimestampUnwrapper(), "video": TimestampUnwrapper()}
        self._last: dict[str, int] = {}
        self._offset = 0
        self.rebased = 0  # how many clock resets were rebased

    def __call__(self, track: str, timestamp: int) -> int:
        value = self._unwrap[track](timestamp) + self._offset
        last = self._last.get(track)
        if last is not None and value < last:
            if last - value > BACKWARD_JUMP_MS:
                self._offset += last - value
                self.rebased += 1
            value = last
        self._last[track] = value
        return value


@dataclass
class _Stats:
    bytes: int = 0
    frames: int = 0
    since: float = field(default_factory=time.monotonic)
    keyframes: int = 0
    first_keyframe_ms: int | None = None
    last_keyframe_ms: int | None = None


@dataclass(frozen=True, slots=True)
class IngestStats:
    """One window of what the publisher sent (``stats.ingest``)."""

    bitrate_kbps: float
    fps: float
    # Mean media time between keyframes seen in the window; 0 with fewer than two.
    keyframe_interval_s: float


class PublishSession:
    def __init__(
        self,
        sink: MediaSink,
        *,
        stream_id: str,
        session_id: str,
        user_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.session_id = session_id
        self.user_id = user_id
        self._clock = clock
        self.started_at = clock()
        self._timeline = StreamClock()
        self._stats = _Stats(since=self.started_at)
        self._keyframe_interval_s = 0.0
        self.video_config: AVCDecoderConfigurationRecord | None = None
        self.audio_config: AudioSpecificConfig | None = None
        self._video_config_raw = b""
        self._audio_config_raw = b""
        self.dropped_before_config = 0
        self.video_frames = 0
        self.audio_frames = 0
        self.closed: CloseReason | None = None
        self.last_media_at = self.started_at  # clock() of the last audio/video message

    async def on_metadata(self, values: dict[str, Any]) -> None:
        await settle(self.sink.on_metadata(values))

    async def on_media(self, message: MediaMessage) -> None:
        """Hand one audio/video message on; :class:`ProtocolError` if it is refused."""
        body = message.payload
        self.last_media_at = self._clock()
        self._stats.bytes += len(body)
        if not body:
            return  # some encoders send empty audio messages; nothing to carry
        if message.is_video:
            await self._on_video(message.timestamp, body)
        else:
            await self._on_audio(message.timestamp, body)

    async def _on_video(self, timestamp: int, body: bytes) -> None:
        header = VideoTagHeader.parse(body)
        if header.frame_type == FrameType.INFO:
            return
        data = body[header.size :]
        if header.packet_type == AVCPacketType.SEQUENCE_HEADER:
            config = AVCDecoderConfigurationRecord.parse(data)
            if data != self._video_config_raw:
                self.video_config, self._video_config_raw = config, data
                log.info("video config", stream_id=self.stream_id, codec=config.codec)
                await settle(self.sink.on_video_config(data))
            return
        if header.packet_type == AVCPacketType.END_OF_SEQUENCE or not data:
            return
        dts = self._timeline("video", timestamp)
        stats = self._stats
        stats.frames += 1
        if header.keyframe:
            stats.keyframes += 1
            if stats.first_keyframe_ms is None:
                stats.first_keyframe_ms = dts
            stats.last_keyframe_ms = dts
        if self.video_config is None:
            self._drop_before_config("video")
            return
        self.video_frames += 1
        await settle(self.sink.on_video(dts, header.composition_time, header.keyframe, data))

    async def _on_audio(self, timestamp: int, body: bytes) -> None:
        header = AudioTagHeader.parse(body)
        data = body[header.size :]
        if header.packet_type == AACPacketType.SEQUENCE_HEADER:
            config = AudioSpecificConfig.parse(data)
            if data != self._audio_config_raw:
                self.audio_config, self._audio_config_raw = config, data
                log.info(
                    "audio config",
                    stream_id=self.stream_id,
                    codec=config.codec,
                    sample_rate=config.sample_rate,
                    channels=config.channels,
                )
                await settle(self.sink.on_audio_config(data))
            return
        if not data:
            return
        dts = self._timeline("audio", timestamp)
        if self.audio_config is None:
            self._drop_before_config("audio")
            return
        self.audio_frames += 1
        await settle(self.sink.on_audio(dts, data))

    def _drop_before_config(self, track: str) -> None:
        self.dropped_before_config += 1
        if self.dropped_before_config == 1:
            log.warning(
                "frames before their sequence header are dropped",
                stream_id=self.stream_id,
                track=track,
            )

    def take_stats(self) -> IngestStats:
        """Bitrate, frame rate and keyframe interval since the previous call; starts a
        new window. The keyframe interval is measured on the media timestamps (the GOP
        the encoder made), not on arrival times, so network jitter does not skew it."""
        now = self._clock()
        stats = self._stats
        elapsed = max(now - stats.since, 1e-6)
        bitrate_kbps = stats.bytes * 8 / 1000 / elapsed
        fps = stats.frames / elapsed
        if stats.keyframes >= 2 and stats.first_keyframe_ms is not None:
            span_ms = (stats.last_keyframe_ms or 0) - stats.first_keyframe_ms
            self._keyframe_interval_s = span_ms / (stats.keyframes - 1) / 1000
        # The window's last keyframe opens the next one: a GOP longer than the window is
        # still measured (and the last figure stands while no new keyframe came).
        last = stats.last_keyframe_ms
        self._stats = _Stats(
            since=now,
            keyframes=int(last is not None),
            first_keyframe_ms=last,
            last_keyframe_ms=last,
        )
        return IngestStats(
            round(bitrate_kbps, 1), round(fps, 2), round(self._keyframe_interval_s, 3)
        )

    @property
    def timeline_rebased(self) -> int:
        return self._timeline.rebased

    async def close(self, reason: CloseReason) -> None:
        """Close the sink once; later calls do nothing."""
        if self.closed is not None:
            return
        self.closed = reason
        await settle(self.sink.close(reason))
