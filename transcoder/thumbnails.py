"""Poster, thumbnails and the scrub sprite with its WebVTT track.

Poster and thumbnails come from keyframes only: seek, then decode with
``skip_frame="NONKEY"`` so the decoder drops everything else (NOTES.md: 10 thumbnails
in 0.49 s instead of 1.92 s decoding everything). The sprite needs pictures at regular
times, so :class:`SpriteSheet` takes them from the ladder's own decode loop, which
sees every frame anyway: a tile costs one small scale, no second decode.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image

from transcoder.source import Rotator

__all__ = [
    "SpriteSheet",
    "encode_jpeg",
    "fit_width",
    "grab_keyframes",
    "poster_time",
    "rgb_image",
    "thumbnail_times",
    "vtt_timestamp",
]

JPEG_QUALITY = 80
SPRITE_QUALITY = 70
POSTER_FRACTION = 0.10


def fit_width(width: int, height: int, target_width: int) -> tuple[int, int]:
    """``target_width`` (never wider than the picture) and the even height keeping the ratio."""
    target = min(target_width, width)
    target -= target % 2
    scaled = max(2, round(height * target / width / 2) * 2)
    return max(2, target), scaled


def rgb_image(frame: VideoFrame) -> Image.Image:
    """A Pillow image of an rgb24 frame, honouring the plane's row padding."""
    plane = frame.planes[0]
    return Image.frombuffer(
        "RGB", (frame.width, frame.height), bytes(plane), "raw", "RGB", plane.line_size, 1
    )


def poster_time(duration_s: float) -> float:
    return duration_s * POSTER_FRACTION


def thumbnail_times(duration_s: float, count: int) -> list[float]:
    """``count`` times spread evenly, each in the middle of its slice of the video."""
    if count <= 0:
        return []
    if duration_s <= 0:
        return [0.0]
    return [duration_s * (index + 0.5) / count for index in range(count)]


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def grab_keyframes(
    container: InputContainer,
    times: Sequence[float],
    *,
    width: int,
    rotation: int = 0,
) -> list[Image.Image]:
    """One picture per time: the first keyframe at or after it (else the last before).

    Pictures are ``width`` wide (upright). Times past the last keyframe repeat the
    last one; a source with no decodable keyframe gives an empty list.
    """
    stream = container.streams.video[0]
    stream.codec_context.skip_frame = "NONKEY"
    time_base = stream.time_base or Fraction(1, av.time_base)
    start = stream.start_time or 0
    rotate = Rotator(rotation)
    scaler = VideoReformatter()
    images: list[Image.Image] = []
    for when in times:
        target = start + int(when / time_base)
        frame = _keyframe_near(container, target, start)
        if frame is None:
            if images:
                images.append(images[-1])
            continue
        upright = rotate(frame)
        out_w, out_h = fit_width(upright.width, upright.height, width)
        rgb = scaler.reformat(upright, out_w, out_h, "rgb24", interpolation=Interpolation.BICUBIC)
        images.append(rgb_image(rgb))
    return images


def _keyframe_near(container: InputContainer, target: int, start: int) -> VideoFrame | None:
    """The first keyframe at or after ``target``, else before it, else the first one.

    Seeking is only as exact as the container's index: MPEG-TS seeks by bisecting
    bytes and may land past a sparse keyframe, hence the last resort at the start.
    """
    stream = container.streams.video[0]
    for offset, backward in ((target, False), (target, True), (start, True)):
        try:
            container.seek(offset, backward=backward, stream=stream)
            for frame in container.decode(stream):
                return frame
        except av.error.FFmpegError:
            continue
    return None


def vtt_timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


@dataclass
class SpriteSheet:
    """Tiles taken every ``interval_s`` from the decode loop, laid out row by row.

    The WebVTT track points each cue at its tile with a media fragment
    (``sprite.jpg#xywh=x,y,w,h``), the format video.js, Plyr and JW Player read.
    """

    tile_width: int
    tile_height: int
    interval_s: float
    columns: int = 10
    rows: int = 10
    tiles: list[Image.Image] = field(default_factory=list)
    _scaler: VideoReformatter = field(default_factory=VideoReformatter)

    @classmethod
    def for_video(
        cls, width: int, height: int, duration_s: float, *, tile_width: int = 160, grid: int = 10
    ) -> SpriteSheet:
        tile_w, tile_h = fit_width(width, height, tile_width)
        # Whole seconds: cues then land on round times; a short video gets a tile per second.
        interval = max(1.0, math.ceil(duration_s / (grid * grid))) if duration_s > 0 else 10.0
        return cls(tile_w, tile_h, interval, columns=grid, rows=grid)

    @property
    def capacity(self) -> int:
        return self.columns * self.rows

    def next_time(self) -> float:
        return len(self.tiles) * self.interval_s

    def offer(self, frame: VideoFrame, time_s: float) -> None:
        """Keep ``frame`` as the next tile if its time has come (call for every frame)."""
        if len(self.tiles) >= self.capacity or time_s + 1e-6 < self.next_time():
            return
        rgb = self._scaler.reformat(
            frame, self.tile_width, self.tile_height, "rgb24", interpolation=Interpolation.AREA
        )
        self.tiles.append(rgb_image(rgb))

    def grid_size(self) -> tuple[int, int]:
        count = max(1, len(self.tiles))
        columns = min(self.columns, count)
        return columns, math.ceil(count / columns)

    def render(self) -> bytes:
        columns, rows = self.grid_size()
        sheet = Image.new("RGB", (columns * self.tile_width, rows * self.tile_height))
        for index, tile in enumerate(self.tiles):
            x, y = self.position(index)
            sheet.paste(tile, (x, y))
        return encode_jpeg(sheet, SPRITE_QUALITY)

    def position(self, index: int) -> tuple[int, int]:
        columns, _ = self.grid_size()
        row, column = divmod(index, columns)
        return column * self.tile_width, row * self.tile_height

    def vtt(self, image_name: str, duration_s: float) -> str:
        lines = ["WEBVTT", ""]
        for index in range(len(self.tiles)):
            start = index * self.interval_s
            end = (index + 1) * self.interval_s
            if index == len(self.tiles) - 1 and duration_s > start:
                end = duration_s  # the last tile lasts to the end
            x, y = self.position(index)
            lines += [
                f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}",
                f"{image_name}#xywh={x},{y},{self.tile_width},{self.tile_height}",
                "",
            ]
        return "\n".join(lines)
