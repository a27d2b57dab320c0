"""A synthetic live source: a moving test pattern with a clock burned in, and a tone.

What ``videopick demo`` publishes, and the sample clip it uploads. Three layers:

- :class:`PatternPainter`: frame index → RGB picture (colour bars scrolling, a bouncing
  square, the wall clock to the millisecond, the frame number). Pure, no encoder.
- :func:`tone_second`: one second of audio (a quiet 440 Hz tone, a 1 kHz beep in the
  first 100 ms of every second), float32 samples; a frame is a slice of it.
- :class:`LiveEncoder`: paints, encodes (libx264 baseline, a keyframe every second,
  no B-frames; AAC-LC) and yields :class:`EncodedPacket`\\ s in decode order with the
  codec configs an RTMP publisher sends first (AVC sequence header, AudioSpecificConfig).

:func:`write_clip` muxes the same picture and sound into an MP4 file.

The clock reads ``time.time()`` when the frame is painted: a viewer who compares it
with their own clock sees glass-to-glass latency (NOTES.md: measure it off the picture).
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import av
from av.packet import Packet
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from ingest.flv import AVCDecoderConfigurationRecord

__all__ = [
    "EncodedPacket",
    "LiveEncoder",
    "PatternPainter",
    "SourceConfig",
    "annexb_units",
    "avc_config",
    "tone_second",
    "write_clip",
]

# SMPTE-ish bars: white, yellow, cyan, green, magenta, red, blue.
_BARS: Final = (
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
)
_NAL_SPS: Final = 7
_NAL_PPS: Final = 8
_NAL_AUD: Final = 9


@dataclass(frozen=True, slots=True)
class SourceConfig:
    width: int = 640
    height: int = 360
    fps: int = 30
    sample_rate: int = 48000
    video_kbps: int = 1200
    audio_kbps: int = 128
    label: str = "VideoPick demo"

    def __post_init__(self) -> None:
        # yuv420p needs even dimensions; x264 refuses odd ones with a cryptic error.
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 64:
            raise ValueError(f"size {self.width}x{self.height}: even, at least 64x64")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps {self.fps}: between 1 and 120")


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded frame, timestamps in milliseconds from the start of the source."""

    kind: Literal["video", "audio"]
    dts_ms: int
    pts_ms: int
    keyframe: bool
    data: bytes  # video: AVCC (4-byte lengths), audio: one raw AAC frame


class PatternPainter:
    """Frame index → picture; the clock is read from ``clock`` (``time.time`` by default)."""

    def __init__(self, config: SourceConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        width, height = config.width, config.height
        # Bars twice as wide as the frame, so any crop of one frame width is seamless.
        self._strip = Image.new("RGB", (2 * width, height))
        draw = ImageDraw.Draw(self._strip)
        bar = width / len(_BARS)
        for copy in range(2):
            for index, colour in enumerate(_BARS):
                left = copy * width + round(index * bar)
                right = copy * width + round((index + 1) * bar)
                draw.rectangle((left, 0, right - 1, height - 1), fill=colour)
        self._big = _font(max(12, height // 7))
        self._small = _font(max(10, height // 18))
        self._box = max(8, height // 8)

    def paint(self, index: int) -> Image.Image:
        cfg = self.config
        width, height = cfg.width, cfg.height
        shift = (index * max(1, width // (4 * cfg.fps))) % width  # one frame width in 4 s
        image = self._strip.crop((shift, 0, shift + width, height))
        draw = ImageDraw.Draw(image)
        # A square bouncing across the picture: motion the encoder must really code.
        travel_x, travel_y = width - self._box, height - self._box
        x = _bounce(index * 7, travel_x)
        y = _bounce(index * 5, travel_y)
        draw.rectangle((x, y, x + self._box - 1, y + self._box - 1), fill=(20, 20, 20))
        # The clock on a dark band across the middle, readable at any size.
        now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
        clock = now.strftime("%H:%M:%S.") + f"{now.microsecond // 1000:03d}"
        band_top, band_bottom = height * 3 // 8, height * 5 // 8
        draw.rectangle((0, band_top, width - 1, band_bottom), fill=(0, 0, 0))
        draw.text(
            (width // 2, (band_top + band_bottom) // 2),
            clock,
            font=self._big,
            fill=(255, 255, 255),
            anchor="mm",
        )
        seconds, frame = divmod(index, cfg.fps)
        caption = f"{cfg.label}  ·  frame {index}  ·  {seconds} s + {frame}/{cfg.fps}  ·  UTC"
        draw.text((8, height - 8), caption, font=self._small, fill=(255, 255, 255), anchor="ld")
        return image


def _bounce(position: int, travel: int) -> int:
    if travel <= 0:
        return 0
    position %= 2 * travel
    return position if position <= travel else 2 * travel - position


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: no system font needed, sized when FreeType is there.
    return ImageFont.load_default(size=size)


@cache
def tone_second(sample_rate: int) -> bytes:
    """One second of mono float32: a 440 Hz tone at -20 dBFS, a 1 kHz beep in 0-100 ms."""
    beep_end = sample_rate // 10
    samples = [
        (0.5 * math.sin(2 * math.pi * 1000 * n / sample_rate) if n < beep_end else 0.0)
        + 0.1 * math.sin(2 * math.pi * 440 * n / sample_rate)
        for n in range(sample_rate)
    ]
    return struct.pack(f"<{sample_rate}f", *samples)


def _audio_frame(start: int, count: int, sample_rate: int) -> av.AudioFrame:
    """Samples ``start`` … ``start + count`` of the tone, the same on both channels."""
    second = tone_second(sample_rate)
    offset = start % sample_rate
    data = bytearray()
    while len(data) < 4 * count:
        take = min(count - len(data) // 4, sample_rate - offset)
        data += second[4 * offset : 4 * (offset + take)]
        offset = 0
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=count)
    frame.sample_rate = sample_rate
    for plane in frame.planes:
        plane.update(bytes(data))
    frame.pts = start
    return frame


def _rgb_frame(image: Image.Image) -> av.VideoFrame:
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame


def annexb_units(data: bytes) -> list[bytes]:
    """H.264 Annex B byte stream (00 00 01 / 00 00 00 01 start codes) → NAL units."""
    units: list[bytes] = []
    start = -1
    cursor = 0
    while True:
        found = data.find(b"\x00\x00\x01", cursor)
        if found < 0:
            break
        if start >= 0:
            end = found - 1 if found > 0 and data[found - 1] == 0 else found
            units.append(data[start:end])
        start = cursor = found + 3
    if start >= 0 and start < len(data):
        units.append(data[start:])
    return [unit for unit in units if unit]


def avc_config(sps: bytes, pps: bytes) -> bytes:
    """ISO/IEC 14496-15 5.3.3.1 AVCDecoderConfigurationRecord, 4-byte NAL lengths."""
    record = AVCDecoderConfigurationRecord(sps[1], sps[2], sps[3], 4, (sps,), (pps,))
    return bytes(record)


class LiveEncoder:
    """Paints and encodes frame after frame; iterate :meth:`packets` for the stream."""

    def __init__(self, config: SourceConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.painter = PatternPainter(config, clock)
        self._video = av.CodecContext.create("libx264", "w")
        self._video.width, self._video.height = config.width, config.height
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = Fraction(1, config.fps)
        self._video.framerate = Fraction(config.fps)
        self._video.bit_rate = config.video_kbps * 1000
        gop = str(config.fps)  # a keyframe every second: segments of one second
        self._video.options = {
            "preset": "veryfast",
            "tune": "zerolatency",  # no lookahead, no B-frames: a frame out per frame in
            "profile": "baseline",
            "g": gop,
            "keyint_min": gop,
            "sc_threshold": "0",
            "bf": "0",
        }
        self._video.open()
        self._audio = av.CodecContext.create("aac", "w")
        self._audio.sample_rate = config.sample_rate
        self._audio.layout = "stereo"
        self._audio.format = "fltp"
        self._audio.bit_rate = config.audio_kbps * 1000
        self._audio.open()
        self._reformatter = VideoReformatter()
        self._frame = 0
        self._samples = 0
        self._audio_shift: int | None = None
        self.video_config: bytes | None = None  # known after the first keyframe

    @property
    def audio_config(self) -> bytes:
        """The AudioSpecificConfig (the AAC encoder writes it when opened)."""
        extradata = self._audio.extradata
        if not extradata:
            raise RuntimeError("the AAC encoder gave no AudioSpecificConfig")
        return bytes(extradata)

    def next_packets(self) -> list[EncodedPacket]:
        """Encode one more video frame and the audio up to its end, in decode order."""
        cfg = self.config
        index = self._frame
        self._frame += 1
        out: list[EncodedPacket] = []
        picture = _rgb_frame(self.painter.paint(index))
        frame = self._reformatter.reformat(picture, format="yuv420p")
        frame.pts = index
        for packet in self._video.encode(frame):
            out.extend(self._video_packet(packet))
        # Audio through the end of this video frame, in whole AAC frames of 1024.
        frame_size = self._audio.frame_size or 1024
        end = (index + 1) * cfg.sample_rate // cfg.fps
        while self._samples < end:
            chunk = _audio_frame(self._samples, frame_size, cfg.sample_rate)
            self._samples += frame_size
            for packet in self._audio.encode(chunk):
                out.append(self._audio_packet(packet))
        out.sort(key=lambda p: p.dts_ms)
        return out

    def packets(self) -> Iterator[EncodedPacket]:
        while True:
            yield from self.next_packets()

    def _video_packet(self, packet: Packet[Any]) -> list[EncodedPacket]:
        units = annexb_units(bytes(packet))
        sps = next((u for u in units if u[0] & 0x1F == _NAL_SPS), None)
        pps = next((u for u in units if u[0] & 0x1F == _NAL_PPS), None)
        if sps is not None and pps is not None and self.video_config is None:
            self.video_config = avc_config(sps, pps)
        body = b"".join(
            len(u).to_bytes(4, "big") + u
            for u in units
            if u[0] & 0x1F not in (_NAL_SPS, _NAL_PPS, _NAL_AUD)
        )
        if not body or self.video_config is None:
            return []
        to_ms = 1000 / self.config.fps
        pts = packet.pts if packet.pts is not None else self._frame - 1
        dts = packet.dts if packet.dts is not None else pts
        return [
            EncodedPacket(
                "video", round(dts * to_ms), round(pts * to_ms), bool(packet.is_keyframe), body
            )
        ]

    def _audio_packet(self, packet: Packet[Any]) -> EncodedPacket:
        # The encoder stamps its priming frame before zero (pts -1024): shift the track
        # by it, so RTMP timestamps start at 0 and never repeat.
        pts = packet.pts if packet.pts is not None else self._samples
        if self._audio_shift is None:
            self._audio_shift = max(0, -pts)
        ms = round((pts + self._audio_shift) * 1000 / self.config.sample_rate)
        return EncodedPacket("audio", ms, ms, True, bytes(packet))


def write_clip(
    path: Path,
    *,
    seconds: float = 10.0,
    config: SourceConfig | None = None,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """An MP4 (H.264 + AAC, fast start) of the pattern and the tone; returns ``path``."""
    cfg = config or SourceConfig()
    painter = PatternPainter(cfg)
    reformatter = VideoReformatter()
    frames = max(1, round(seconds * cfg.fps))
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=cfg.fps)
        video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
        video.bit_rate = cfg.video_kbps * 1000
        video.codec_context.options = {"preset": "veryfast", "g": str(2 * cfg.fps)}
        audio = out.add_stream("aac", rate=cfg.sample_rate)
        audio.layout = "stereo"
        audio.bit_rate = cfg.audio_kbps * 1000
        samples = 0
        for index in range(frames):
            picture = reformatter.reformat(_rgb_frame(painter.paint(index)), format="yuv420p")
            picture.pts = index
            out.mux(video.encode(picture))
            end = (index + 1) * cfg.sample_rate // cfg.fps
            while samples < end:
                out.mux(audio.encode(_audio_frame(samples, 1024, cfg.sample_rate)))
                samples += 1024
            if progress is not None and index % cfg.fps == 0:
                progress(index / frames)
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    if progress is not None:
        progress(1.0)
    return path
