"""Opening a source safely, and what the job needs to know about it.

Uploads are hostile until proven otherwise (RELIABILITY.md, "Media"):

- The source is read through a Python file object (:class:`~transcoder.storeio.StoreReader`),
  so FFmpeg's protocol layer never sees a URL, and every nested open a demuxer may
  attempt (HLS or concat playlists, mov data references, the HLS-in-AVI trick) goes
  through :func:`_refuse_nested_open`, which refuses it.
- Only the demuxers of real video containers may claim the input (``format_whitelist``).
- Dimensions of 16384 px or more, absurd durations and hundreds of streams are refused
  from the header, before anything is decoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Protocol

import av
import av.error
from av.container import InputContainer
from av.filter import Graph
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from transcoder.errors import PoisonInputError

__all__ = [
    "ALLOWED_DEMUXERS",
    "MAX_DIMENSION",
    "Rotator",
    "SourceFile",
    "SourceInfo",
    "open_source",
    "probe",
]

# Demuxers of the containers cameras, phones, OBS and editors write. Notably absent:
# hls, dash, concat, image2, the raw and text formats.
ALLOWED_DEMUXERS: Final = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,flv,mpegts,avi"
# RELIABILITY.md: refuse 16384 px and more from the header (decoder buffers for a
# 50000x50000 header would be gigabytes).
MAX_DIMENSION: Final = 16384
MAX_STREAMS: Final = 64
# Probing reads at most this much before giving up on finding stream parameters.
PROBE_SIZE: Final = 32 * 1024 * 1024
DEFAULT_FPS: Final = Fraction(30)


class SourceFile(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


def _refuse_nested_open(url: str, flags: int, options: dict[str, Any]) -> Any:
    raise PermissionError(f"the source tried to open {url!r}; nested inputs are refused")


def open_source(file: SourceFile) -> InputContainer:
    """``av.open`` with the guards of this module; a refusal is :class:`PoisonInputError`."""
    try:
        container = av.open(
            file,
            mode="r",
            options={
                "format_whitelist": ALLOWED_DEMUXERS,
                "probesize": str(PROBE_SIZE),
                "analyzeduration": str(10_000_000),  # µs
            },
            io_open=_refuse_nested_open,
        )
    except (av.error.FFmpegError, PermissionError, ValueError) as exc:
        raise PoisonInputError(f"not a supported video container: {_short(exc)}") from exc
    return container


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


@dataclass(frozen=True, slots=True)
class SourceInfo:
    width: int  # coded size
    height: int
    sample_aspect_ratio: float
    rotation: int  # degrees counter-clockwise, from the display matrix
    fps: Fraction
    duration_s: float  # 0.0 when unknown
    has_audio: bool
    format_name: str

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height once rotated (a phone's portrait video is 1080x1920)."""
        if self.rotation in (90, -90, 270, -270):
            return self.height, self.width
        return self.width, self.height


def probe(
    container: InputContainer, *, duration_hint_s: float = 0.0, max_duration_s: float = 0.0
) -> SourceInfo:
    """Check the header against the limits and decode one frame to learn the rotation."""
    if len(container.streams) > MAX_STREAMS:
        raise PoisonInputError(f"{len(container.streams)} streams; at most {MAX_STREAMS} allowed")
    if not container.streams.video:
        raise PoisonInputError("the file has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width >= MAX_DIMENSION or height >= MAX_DIMENSION:
        raise PoisonInputError(
            f"video is {width}x{height}; {MAX_DIMENSION} px and more are refused"
        )
    if width < 2 or height < 2:
        raise PoisonInputError(f"video size {width}x{height} is unusable")
    duration = _duration_s(container, stream) or max(0.0, duration_hint_s)
    if max_duration_s and duration > max_duration_s:
        raise PoisonInputError(f"video lasts {duration:.0f} s; the limit is {max_duration_s:.0f} s")
    fps = stream.average_rate or stream.guessed_rate or DEFAULT_FPS
    if not 1 <= fps <= 240:
        fps = DEFAULT_FPS  # a broken header; timestamps still drive the encoders
    sar = stream.sample_aspect_ratio
    first = _first_frame(container, stream)
    return SourceInfo(
        width=width,
        height=height,
        sample_aspect_ratio=float(sar) if sar else 1.0,
        rotation=_right_angle(first.rotation),
        fps=Fraction(fps),
        duration_s=duration,
        has_audio=bool(container.streams.audio),
        format_name=container.format.name,
    )


def _duration_s(container: InputContainer, stream: VideoStream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _first_frame(container: InputContainer, stream: VideoStream) -> VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as exc:
        raise PoisonInputError(f"the video cannot be decoded: {_short(exc)}") from exc
    raise PoisonInputError("the video stream has no decodable frame")


def _right_angle(degrees: float) -> int:
    """The display rotation snapped to 0/90/180/-90 (others are not worth supporting)."""
    if math.isnan(degrees):
        return 0
    snapped = round(degrees / 90) * 90 % 360
    return {0: 0, 90: 90, 180: 180, 270: -90}[snapped]


class Rotator:
    """Turns decoded frames upright, as players do with the display matrix.

    ``rotation`` is counter-clockwise (FFmpeg's ``av_display_rotation_get``); the
    filter chain is the one ffmpeg's own autorotate inserts.
    """

    def __init__(self, rotation: int) -> None:
        self.rotation = rotation
        self._graph: Graph | None = None
        self._push: Callable[[VideoFrame], None] | None = None

    @property
    def active(self) -> bool:
        return self.rotation != 0

    def _build(self, frame: VideoFrame) -> Graph:
        graph = Graph()
        source = graph.add_buffer(
            width=frame.width,
            height=frame.height,
            format=frame.format,
            time_base=frame.time_base or Fraction(1, 90000),
        )
        chain = {
            -90: ["transpose=clock"],
            90: ["transpose=cclock"],
            180: ["hflip", "vflip"],
        }[self.rotation]
        last = source
        for spec in chain:
            name, _, args = spec.partition("=")
            node = graph.add(name, args or None)
            last.link_to(node)
            last = node
        sink = graph.add("buffersink")
        last.link_to(sink)
        graph.configure()
        return graph

    def __call__(self, frame: VideoFrame) -> VideoFrame:
        if not self.active:
            return frame
        if self._graph is None:
            self._graph = self._build(frame)
        self._graph.vpush(frame)
        upright = self._graph.vpull()
        upright.pts = frame.pts
        upright.time_base = frame.time_base
        return upright
