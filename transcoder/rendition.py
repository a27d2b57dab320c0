"""One rendition: scale, encode (libx264), mux to fMP4 HLS, all on its own thread.

PyAV releases the GIL while it scales, encodes and muxes, so N renditions on N
threads use the cores the way ffmpeg's own threads do. Everything that touches one
output container stays on its thread (NOTES.md); the decode loop hands frames and
audio packets over through a bounded queue.

FFmpeg's ``hls`` muxer writes the files; its ``io_open`` callback hands each one to
:class:`HlsFiles`, which uploads init and segments to the store as soon as they are
closed and keeps the media playlist for the end (a playlist must never name a
segment that is not stored yet).
"""

from __future__ import annotations

import io
import math
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

import av
from av.audio.codeccontext import AudioCodecContext
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter
from av.video.stream import VideoStream

from transcoder.ladder import Rung
from transcoder.layout import INIT_NAME, MEDIA_PLAYLIST_NAME, SEGMENT_PATTERN, content_type_for
from transcoder.storeio import Uploads

__all__ = ["AudioPacket", "EncoderSettings", "HlsFiles", "RenditionEncoder", "RenditionOutput"]

# The hls muxer joins this "scheme" to every name it opens; we strip it again. Without
# a scheme it would treat names as local paths and create a temp folder.
_SCHEME: Final = "vp://"
QUEUE_FRAMES: Final = 8
PUT_POLL_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    preset: str
    crf: int
    keyframe_s: float
    segment_s: float


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """An encoded AAC packet, shared by every rendition (audio is encoded once)."""

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: Fraction


class _MemoryFile(io.RawIOBase):
    """What the muxer writes one file into; seekable, since the mp4 muxer seeks back."""

    def __init__(self, name: str, on_close: Any) -> None:
        super().__init__()
        self.name = name
        self._buffer = io.BytesIO()
        self._on_close = on_close

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._buffer.write(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._buffer.seek(offset, whence)

    def tell(self) -> int:
        return self._buffer.tell()

    def close(self) -> None:
        if not self.closed:
            data = self._buffer.getvalue()
            super().close()
            self._on_close(self.name, data)


class HlsFiles:
    """The ``io_open`` target of one rendition's hls muxer."""

    def __init__(self, key_prefix: str, uploads: Uploads) -> None:
        self.key_prefix = key_prefix  # "vod/{video_id}/{rendition}/"
        self._uploads = uploads
        self.sizes: dict[str, int] = {}
        self.playlist: str | None = None

    def io_open(self, url: str, flags: int, options: dict[str, Any]) -> _MemoryFile:
        name = url.removeprefix(_SCHEME)
        if "/" in name or name.startswith(".") or not name:
            raise PermissionError(f"the hls muxer asked for an unexpected file {url!r}")
        if not flags & 2:  # AVIO_FLAG_WRITE: the muxer has nothing to read back here
            raise PermissionError(f"the hls muxer tried to read {url!r}")
        return _MemoryFile(name, self._closed)

    def _closed(self, name: str, data: bytes) -> None:
        if name == MEDIA_PLAYLIST_NAME:
            self.playlist = data.decode("utf-8")
            return
        self.sizes[name] = len(data)
        self._uploads.put(self.key_prefix + name, data, content_type_for(name))


@dataclass
class RenditionOutput:
    """What a finished rendition leaves behind."""

    rung: Rung
    files: HlsFiles
    video_extradata: bytes = b""
    frames: int = 0


@dataclass
class RenditionEncoder:
    """Owns one output container and the thread that feeds it."""

    rung: Rung
    files: HlsFiles
    settings: EncoderSettings
    source_time_base: Fraction
    fps: Fraction
    audio_template: AudioCodecContext | None
    _queue: queue.Queue[tuple[str, Any] | None] = field(
        default_factory=lambda: queue.Queue(QUEUE_FRAMES)
    )
    _thread: threading.Thread | None = None
    error: BaseException | None = None
    output: RenditionOutput | None = None

    def start(self) -> None:
        self._container = self._open()
        self._thread = threading.Thread(target=self._run, name=f"rendition-{self.rung.name}")
        self._thread.start()

    def _open(self) -> OutputContainer:
        segment_s = self.settings.segment_s
        container = av.open(
            _SCHEME + MEDIA_PLAYLIST_NAME,
            mode="w",
            format="hls",
            options={
                "hls_time": f"{segment_s:g}",
                "hls_playlist_type": "vod",
                "hls_list_size": "0",
                "hls_segment_type": "fmp4",
                "hls_segment_filename": _SCHEME + SEGMENT_PATTERN,
                "hls_fmp4_init_filename": INIT_NAME,
                "hls_flags": "independent_segments",
            },
            io_open=self.files.io_open,
        )
        assert isinstance(container, OutputContainer)
        video = container.add_stream("libx264", rate=self.fps)
        assert isinstance(video, VideoStream)
        video.width, video.height = self.rung.width, self.rung.height
        video.pix_fmt = "yuv420p"
        video.time_base = self.source_time_base
        context = video.codec_context
        context.time_base = self.source_time_base
        # Keyframes are forced on a fixed time grid by the decode loop (identical frames
        # for every rendition: aligned GOPs); x264's own keyint is only a backstop and
        # scene-cut keyframes are off, since they would differ between sizes.
        context.gop_size = max(2, math.ceil(float(self.fps) * self.settings.keyframe_s * 2))
        # PyAV defaults every codec to slice threads, which libx264 turns into
        # sliced_threads=1 (2 slices, the encode call waits for each frame): the top
        # rung then cannot fill both cores while the smaller ones wait on the shared
        # decode. Frame threads are what the ffmpeg CLI gets (threads=1.5 x cores).
        context.thread_type = "FRAME"
        context.options = {
            "preset": self.settings.preset,
            "crf": str(self.settings.crf),
            "maxrate": f"{self.rung.maxrate_kbps}k",
            "bufsize": f"{self.rung.bufsize_kbps}k",
            "forced-idr": "1",
            "sc_threshold": "0",
            "x264-params": "scenecut=0:open-gop=0",
        }
        self._video = video
        self._audio = None
        if self.audio_template is not None:
            template = self.audio_template
            audio = container.add_stream("aac", rate=template.sample_rate)
            audio.codec_context.layout = template.layout
            audio.codec_context.bit_rate = template.bit_rate
            audio.codec_context.time_base = template.time_base
            self._audio = audio
        self._scaler = VideoReformatter()
        return container

    def put(self, item: tuple[str, Any] | None) -> None:
        """Queue work; raises the thread's error instead of blocking on a dead thread."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=PUT_POLL_S)
            except queue.Full:
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError(f"rendition {self.rung.name} stopped") from self.error
                continue
            return

    def join(self) -> RenditionOutput:
        assert self._thread is not None
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.output is not None
        return self.output

    def _run(self) -> None:
        frames = 0
        try:
            while (item := self._queue.get()) is not None:
                kind, payload = item
                if kind == "video":
                    frame, keyframe = payload
                    self._encode(frame, keyframe=keyframe)
                    frames += 1
                else:
                    self._mux_audio(payload)
            for packet in self._video.encode(None):
                self._container.mux(packet)
            extradata = bytes(self._video.codec_context.extradata or b"")
            self._container.close()
            self.output = RenditionOutput(self.rung, self.files, extradata, frames)
        except BaseException as exc:  # handed to the decode loop, which raises it
            self.error = exc
            self._drain()

    def _encode(self, frame: VideoFrame, *, keyframe: bool) -> None:
        scaled = self._scaler.reformat(
            frame,
            self.rung.width,
            self.rung.height,
            "yuv420p",
            interpolation=Interpolation.BICUBIC,
        )
        # Same size and format: reformat hands back the source frame itself, shared with
        # the other threads; the decode loop already set its picture type, and it must
        # not be mutated here.
        if scaled is not frame:
            scaled.pict_type = PictureType.I if keyframe else PictureType.NONE
        for packet in self._video.encode(scaled):
            self._container.mux(packet)

    def _mux_audio(self, shared: AudioPacket) -> None:
        assert self._audio is not None
        packet = Packet(shared.data)
        packet.pts = shared.pts
        packet.dts = shared.dts
        packet.duration = shared.duration
        packet.time_base = shared.time_base
        packet.stream = self._audio
        self._container.mux(packet)

    def _drain(self) -> None:
        """Empty the queue so a decode loop blocked on put() notices the error."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
