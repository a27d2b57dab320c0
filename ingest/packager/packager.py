"""The packager core: sink calls in, fMP4 init/parts/segments out. Sans-IO, one thread.

:class:`Packager` takes the calls the RTMP server makes on a media sink (as
:class:`Command` values stamped with their arrival time) and returns what became
ready: :class:`InitReady` once, then :class:`PartReady` and :class:`SegmentReady` as
the cutter (``cutter.py``) closes them, and :class:`Finished` at the end. It does no
I/O and never raises on bad input: a garbage config record or a timestamp jump is
logged and survived (RELIABILITY.md, "RTMP ingest").

Start-up: media is held until the init segment can be written — every track the
metadata announces has its configuration record (or ``config_wait_ms`` of media went
by), and the video frame rate is known (SPS VUI, metadata, or measured from the first
frames). The held media then goes through as if it had just arrived.

Reconnects: a packager built with a :class:`Resume` continues a broadcast another
packager (the dropped connection's) left off — media sequence numbers, decode times
and fragment numbers carry on from its :meth:`Packager.position`, the declared part
target stays the broadcast's, and the first segment is flagged ``discontinuity``
(EXT-X-DISCONTINUITY: the publisher's encoder restarted).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from structlog.stdlib import BoundLogger

from ingest.packager import fmp4
from ingest.packager.codecs import AAC_FRAME_SAMPLES, AacConfig, AvcConfig
from ingest.packager.cutter import (
    Cut,
    Cutter,
    CutterConfig,
    PartClosed,
    SegmentClosed,
    choose_part_target,
)
from ingest.packager.errors import ConfigError
from ingest.packager.timeline import SessionBase, TrackClock

# Audio whose timestamp is this far from the sample count is re-synced (ahead) or
# dropped (behind): AAC frames are counted, not timed, so ms rounding never drifts.
AUDIO_RESYNC_MS = 100
# Frames whose deltas estimate the next frame's duration (the last frame of a part).
DELTA_WINDOW = 8
# Media held before the init segment exists, at most.
MAX_HELD_COMMANDS = 600
FRAMES_TO_MEASURE_FPS = 6
DEFAULT_FPS = 30.0


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a broadcast's media stopped: the next connection continues from here."""

    sequence: int  # the next media sequence number
    offset_s: float  # media time so far (the end of the last segment)
    fragment_sequence: int  # the last mfhd sequence number written
    part_target_s: float  # PART-TARGET the playlist declared (fixed per broadcast)


@dataclass(frozen=True, slots=True)
class PackagerConfig:
    part_target_s: float = 0.25
    segment_target_s: float = 1.0
    target_duration_s: int = 2
    config_wait_ms: int = 1000  # media span to wait for a missing config record


# -- commands (what the sink was told) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metadata:
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    record: bytes


@dataclass(frozen=True, slots=True)
class AudioConfig:
    record: bytes


@dataclass(frozen=True, slots=True)
class VideoFrame:
    dts_ms: int
    cts_ms: int
    keyframe: bool
    data: bytes
    arrival_s: float  # time.monotonic() when the sink got it
    wall_s: float  # time.time() when the sink got it


@dataclass(frozen=True, slots=True)
class AudioFrame:
    dts_ms: int
    data: bytes
    arrival_s: float
    wall_s: float


@dataclass(frozen=True, slots=True)
class Close:
    reason: str


Command = Metadata | VideoConfig | AudioConfig | VideoFrame | AudioFrame | Close


# -- outputs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitReady:
    data: bytes
    video_codec: str
    audio_codec: str
    width: int
    height: int
    fps: float
    part_target_s: float
    target_duration_s: int


@dataclass(frozen=True, slots=True)
class PartReady:
    sequence: int
    index: int
    data: bytes
    duration_s: float
    independent: bool
    last_arrival_s: float  # monotonic arrival of the part's last frame
    discontinuity: bool = False  # the first part after a reconnect


@dataclass(frozen=True, slots=True)
class SegmentReady:
    sequence: int
    data: bytes
    duration_s: float
    independent: bool
    part_count: int
    program_date_time: str
    discontinuity: bool = False  # the first segment after a reconnect


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str
    duration_s: float
    segment_count: int


Output = InitReady | PartReady | SegmentReady | Finished


@dataclass
class _PendingVideo:
    dts: int  # ticks
    cts: int
    data: bytes
    sync: bool


@dataclass
class _Stats:
    video_frames: int = 0
    audio_frames: int = 0
    dropped_video: int = 0
    dropped_audio: int = 0
    parts: int = 0
    segments: int = 0


@dataclass
class _Held:
    commands: list[VideoFrame | AudioFrame] = field(default_factory=list)
    first_ms: int | None = None
    last_ms: int | None = None


class Packager:
    def __init__(
        self, config: PackagerConfig, log: BoundLogger, resume: Resume | None = None
    ) -> None:
        self.config = config
        self.log = log
        self.resume = resume
        # Added to every decode time (ticks of each track) when continuing a broadcast.
        self._video_offset = 0
        self._audio_offset = 0
        self.stats = _Stats()
        self._metadata: dict[str, Any] = {}
        self._avc: AvcConfig | None = None
        self._aac: AacConfig | None = None
        self._bad_configs: set[str] = set()
        self._held = _Held()
        self._started = False
        self._finished = False
        self._tracks: tuple[bool, bool] = (False, False)  # (video, audio) in the init
        self._base = SessionBase()
        self._video_clock = TrackClock("video", self._base, log, nominal_ms=33)
        self._audio_clock = TrackClock(
            "audio", self._base, log, nominal_ms=21, strictly_increasing=False
        )
        self._cutter: Cutter | None = None
        self._part_target_s = config.part_target_s
        self._frame_ticks = 3000
        self._deltas: deque[int] = deque(maxlen=DELTA_WINDOW)
        self._seen_keyframe = False
        self._last_video_dts: int | None = None
        self._audio_ticks: int | None = None  # decode time of the next audio frame
        self._pending_video: list[_PendingVideo] = []
        self._pending_audio: list[tuple[int, bytes]] = []
        self._segment_parts: list[bytes] = []
        self._fragment_sequence = resume.fragment_sequence if resume else 0
        self._last_arrival_s = 0.0
        self._wall_origin_s: float | None = None
        self._duration_ticks = 0
        self._warned: set[str] = set()

    # -- input -------------------------------------------------------------------------

    def feed(self, command: Command) -> list[Output]:
        if self._finished:
            return []
        if isinstance(command, VideoFrame | AudioFrame):
            return self._media(command) if self._started else self._hold(command)
        if isinstance(command, Close):
            return self._finish(command.reason)
        if isinstance(command, Metadata):
            self._metadata = dict(command.values)
        elif isinstance(command, VideoConfig):
            self._on_video_config(command.record)
        else:
            self._on_audio_config(command.record)
        return []

    def _on_video_config(self, record: bytes) -> None:
        try:
            config = AvcConfig.parse(record)
        except ConfigError as exc:
            self._bad_configs.add("video")
            self.log.error("unusable AVC sequence header; video dropped", error=str(exc))
            return
        if self._avc is None or not self._started:
            self._avc = config
        elif config.record != self._avc.record:
            self._warn_once("video-config", "AVC configuration changed mid-stream; kept the first")

    def _on_audio_config(self, record: bytes) -> None:
        try:
            config = AacConfig.parse(record)
        except ConfigError as exc:
            self._bad_configs.add("audio")
            self.log.error("unusable AAC sequence header; audio dropped", error=str(exc))
            return
        if self._aac is None or not self._started:
            self._aac = config
        elif config.asc != self._aac.asc:
            self._warn_once("audio-config", "AAC configuration changed mid-stream; kept the first")

    def _warn_once(self, key: str, message: str, **fields: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.log.warning(message, **fields)

    # -- start-up ------------------------------------------------------------------------

    def _expected(self) -> tuple[bool, bool] | None:
        """(video, audio) the metadata announces; None without usable metadata."""
        video = self._metadata.get("videocodecid") not in (None, 0, "", False)
        audio = self._metadata.get("audiocodecid") not in (None, 0, "", False)
        return (video, audio) if video or audio else None

    def _hold(self, frame: VideoFrame | AudioFrame) -> list[Output]:
        held = self._held
        held.commands.append(frame)
        held.first_ms = frame.dts_ms if held.first_ms is None else held.first_ms
        held.last_ms = frame.dts_ms
        waited_ms = held.last_ms - held.first_ms
        expired = waited_ms >= self.config.config_wait_ms or len(held.commands) >= MAX_HELD_COMMANDS
        expected = self._expected()
        if expected is None:
            # No metadata: whatever configs came before the first frame are the tracks.
            expected = (self._avc is not None, self._aac is not None)
        want_video = expected[0] and "video" not in self._bad_configs
        want_audio = expected[1] and "audio" not in self._bad_configs
        configs_ready = (not want_video or self._avc is not None) and (
            not want_audio or self._aac is not None
        )
        if not (configs_ready or expired):
            return []
        if self._avc is not None and not self._fps_known() and not expired:
            return []
        if self._avc is None and self._aac is None:
            if expired:
                self._warn_once("no-config", "no usable codec configuration; media dropped")
                held.commands.clear()
                held.first_ms = None
            return []
        return self._start()

    def _fps_known(self) -> bool:
        return self._announced_fps() > 0 or self._measured_fps() > 0

    def _announced_fps(self) -> float:
        if self._avc is not None and self._avc.sps.fps > 0:
            return self._avc.sps.fps
        for key in ("framerate", "videoframerate"):
            value = self._metadata.get(key)
            if isinstance(value, int | float) and 0 < value <= 240:
                return float(value)
        return 0.0

    def _measured_fps(self) -> float:
        stamps = [c.dts_ms for c in self._held.commands if isinstance(c, VideoFrame)]
        if len(stamps) < FRAMES_TO_MEASURE_FPS:
            return 0.0
        deltas = [b - a for a, b in itertools.pairwise(stamps) if b > a]
        if not deltas:
            return 0.0
        return 1000.0 / statistics.median(deltas)

    def _start(self) -> list[Output]:
        video, audio = self._avc, self._aac
        self._tracks = (video is not None, audio is not None)
        config = self.config
        if video is not None:
            fps = self._announced_fps() or self._measured_fps() or DEFAULT_FPS
            self._frame_ticks = round(fmp4.VIDEO_TIMESCALE / fps)
            self._part_target_s = choose_part_target(config.part_target_s, 1.0 / fps)
            cutter_config = CutterConfig.from_seconds(
                fmp4.VIDEO_TIMESCALE,
                part_target_s=self._part_target_s,
                segment_target_s=config.segment_target_s,
                target_duration_s=config.target_duration_s,
            )
        else:
            assert audio is not None
            fps = 0.0
            self._part_target_s = choose_part_target(config.part_target_s, audio.frame_duration_s)
            cutter_config = CutterConfig.from_seconds(
                audio.sample_rate,
                part_target_s=self._part_target_s,
                segment_target_s=config.segment_target_s,
                target_duration_s=config.target_duration_s,
                all_sync=True,
            )
        resume = self.resume
        if resume is not None:
            self._part_target_s = resume.part_target_s
            cutter_config = replace(
                cutter_config,
                part_target=math.floor(resume.part_target_s * cutter_config.timescale + 1e-6),
            )
            self._video_offset = round(resume.offset_s * fmp4.VIDEO_TIMESCALE)
            self._audio_offset = round(resume.offset_s * audio.sample_rate) if audio else 0
        first_sequence = resume.sequence if resume else 0
        # The timeline starts at 0 (or where the broadcast stopped): the first part opens
        # there, so segment durations add up to the broadcast's duration.
        self._duration_ticks = round((resume.offset_s if resume else 0.0) * cutter_config.timescale)
        self._cutter = Cutter(cutter_config, first_sequence, start=self._duration_ticks)
        self._started = True
        init = InitReady(
            data=fmp4.init_segment(video, audio),
            video_codec=video.codec_string if video else "",
            audio_codec=audio.codec_string if audio else "",
            width=video.sps.width if video else 0,
            height=video.sps.height if video else 0,
            fps=round(fps, 3),
            part_target_s=self._part_target_s,
            target_duration_s=config.target_duration_s,
        )
        self.log.info(
            "packaging started",
            video=init.video_codec,
            audio=init.audio_codec,
            size=f"{init.width}x{init.height}",
            fps=init.fps,
            part_target_s=init.part_target_s,
        )
        outputs: list[Output] = [init]
        held, self._held = self._held.commands, _Held()
        for frame in held:
            outputs += self._media(frame)
        return outputs

    # -- media ---------------------------------------------------------------------------

    def _media(self, frame: VideoFrame | AudioFrame) -> list[Output]:
        if self._wall_origin_s is None:
            # Program date-times stay on the broadcast's clock across a reconnect.
            self._wall_origin_s = frame.wall_s - (self.resume.offset_s if self.resume else 0.0)
        if isinstance(frame, VideoFrame):
            return self._video(frame)
        return self._audio(frame)

    def _video(self, frame: VideoFrame) -> list[Output]:
        if not self._tracks[0] or not frame.data:
            self.stats.dropped_video += 1
            return []
        if not self._seen_keyframe:
            if not frame.keyframe:
                self.stats.dropped_video += 1
                self._warn_once("no-keyframe", "video before the first keyframe dropped")
                return []
            self._seen_keyframe = True
        self.stats.video_frames += 1
        t_ms = self._video_clock.map(frame.dts_ms, frame.wall_s)
        # pts = dts + cts (FLV video tag); a clamped dts keeps its composition offset.
        dts = t_ms * 90 + self._video_offset
        if self._last_video_dts is not None:
            self._deltas.append(dts - self._last_video_dts)
        self._last_video_dts = dts
        sample = _PendingVideo(dts, frame.cts_ms * 90, frame.data, frame.keyframe)
        return self._drive(dts, frame.keyframe, sample, None, frame.arrival_s)

    def _audio(self, frame: AudioFrame) -> list[Output]:
        aac = self._aac
        if not self._tracks[1] or aac is None or not frame.data:
            self.stats.dropped_audio += 1
            return []
        t_ms = self._audio_clock.map(frame.dts_ms, frame.wall_s)
        rate = aac.sample_rate
        stamped = round(t_ms * rate / 1000) + self._audio_offset
        if self._audio_ticks is None:
            ticks = stamped
        else:
            drift_ms = (stamped - self._audio_ticks) * 1000 / rate
            if drift_ms > AUDIO_RESYNC_MS:
                self.log.info("audio gap; re-synced to the timestamps", gap_ms=round(drift_ms))
                ticks = stamped
            elif drift_ms < -AUDIO_RESYNC_MS:
                self.stats.dropped_audio += 1
                self._warn_once("audio-behind", "audio frames behind the timeline dropped")
                return []
            else:
                ticks = self._audio_ticks
        self._audio_ticks = ticks + AAC_FRAME_SAMPLES
        self.stats.audio_frames += 1
        if self._tracks[0]:
            self._pending_audio.append((ticks, frame.data))  # rides in the video's parts
            return []
        return self._drive(ticks, True, None, (ticks, frame.data), frame.arrival_s)

    def _estimate(self) -> int:
        if not self._tracks[0]:
            return AAC_FRAME_SAMPLES
        # The shortest recent frame interval: the next frame then never arrives before the
        # estimated end of this one, so contiguous parts never overlap (cutter.py).
        if self._deltas:
            return max(1, min(self._deltas))
        return self._frame_ticks

    def _drive(
        self,
        t: int,
        sync: bool,
        video: _PendingVideo | None,
        audio: tuple[int, bytes] | None,
        arrival_s: float,
    ) -> list[Output]:
        """Run one driving-track sample through the cutter around adding it to the part."""
        cutter = self._cutter
        assert cutter is not None
        outputs = self._apply(cutter.before(t, sync))
        if video is not None:
            self._pending_video.append(video)
        if audio is not None:
            self._pending_audio.append(audio)
        self._last_arrival_s = arrival_s
        return outputs + self._apply(cutter.after(t, self._estimate()))

    def _apply(self, cuts: list[Cut]) -> list[Output]:
        outputs: list[Output] = []
        for cut in cuts:
            if isinstance(cut, PartClosed):
                outputs.append(self._emit_part(cut))
            else:
                outputs.append(self._emit_segment(cut))
        return outputs

    def _timescale(self) -> int:
        assert self._cutter is not None
        return self._cutter.config.timescale

    def _emit_part(self, cut: PartClosed) -> PartReady:
        video_samples: list[fmp4.Sample] = []
        pending = self._pending_video
        if pending and pending[0].dts > cut.start:
            # The part starts where the previous one ended (cutter.py): decode the first
            # frame that much earlier, present it at the same time.
            first = pending[0]
            first.cts += first.dts - cut.start
            first.dts = cut.start
        for index, item in enumerate(pending):
            following = pending[index + 1].dts if index + 1 < len(pending) else cut.end
            video_samples.append(
                fmp4.Sample(item.dts, max(1, following - item.dts), item.data, item.sync, item.cts)
            )
        audio_samples: list[fmp4.Sample] = []
        pending_audio = self._pending_audio
        for index, (ticks, data) in enumerate(pending_audio):
            following = (
                pending_audio[index + 1][0]
                if index + 1 < len(pending_audio)
                else ticks + AAC_FRAME_SAMPLES
            )
            audio_samples.append(fmp4.Sample(ticks, max(1, following - ticks), data))
        self._pending_video, self._pending_audio = [], []
        self._fragment_sequence += 1
        data = fmp4.fragment(self._fragment_sequence, video_samples, audio_samples)
        self._segment_parts.append(data)
        self.stats.parts += 1
        return PartReady(
            sequence=cut.sequence,
            index=cut.index,
            data=data,
            duration_s=cut.duration / self._timescale(),
            independent=cut.independent,
            last_arrival_s=self._last_arrival_s,
            discontinuity=cut.index == 0 and self._after_reconnect(cut.sequence),
        )

    def _emit_segment(self, cut: SegmentClosed) -> SegmentReady:
        data = b"".join(self._segment_parts)
        self._segment_parts = []
        self.stats.segments += 1
        timescale = self._timescale()
        self._duration_ticks = cut.end
        start_s = cut.start / timescale
        origin = self._wall_origin_s or 0.0
        pdt = datetime.fromtimestamp(origin, UTC) + timedelta(seconds=start_s)
        return SegmentReady(
            sequence=cut.sequence,
            data=data,
            duration_s=cut.duration / timescale,
            independent=cut.independent,
            part_count=cut.part_count,
            program_date_time=pdt.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            discontinuity=self._after_reconnect(cut.sequence),
        )

    def _after_reconnect(self, sequence: int) -> bool:
        return self.resume is not None and sequence == self.resume.sequence

    def position(self) -> Resume:
        """Where the next connection of this broadcast continues (call after Close)."""
        resume, cutter = self.resume, self._cutter
        if cutter is None:  # nothing was packaged: the broadcast is where it was
            return resume or Resume(0, 0.0, 0, self.config.part_target_s)
        return Resume(
            sequence=cutter.sequence,
            offset_s=self._duration_ticks / self._timescale(),
            fragment_sequence=self._fragment_sequence,
            part_target_s=self._part_target_s,
        )

    def _finish(self, reason: str) -> list[Output]:
        self._finished = True
        outputs: list[Output] = []
        cutter = self._cutter
        if cutter is not None and cutter.part_open:
            if self._tracks[0]:
                end = (self._last_video_dts or 0) + self._estimate()
            else:
                end = self._audio_ticks or 0  # just after the last audio frame
            outputs += self._apply(cutter.finish(end))
        elif cutter is not None:
            outputs += self._apply(cutter.finish(0))
        if cutter is not None:
            duration_s = self._duration_ticks / self._timescale()
        else:
            duration_s = self.resume.offset_s if self.resume else 0.0
        outputs.append(Finished(reason, duration_s, self.stats.segments))
        self.log.info(
            "packaging finished",
            reason=reason,
            duration_s=round(duration_s, 3),
            segments=self.stats.segments,
            parts=self.stats.parts,
            video_frames=self.stats.video_frames,
            audio_frames=self.stats.audio_frames,
            dropped_video=self.stats.dropped_video,
            dropped_audio=self.stats.dropped_audio,
        )
        return outputs
