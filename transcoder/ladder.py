"""Which renditions a source gets: the ladder, fitted to the source, never upscaled.

A ladder rung is a box (1920x1080 for "1080p") and a bitrate cap. Each box is turned
to the source's orientation (a portrait phone video gets 1080x1920), the source's
display size is fitted inside it keeping the aspect ratio, and sizes are rounded to
even numbers (4:2:0 chroma needs both dimensions even). A rung whose box is larger
than the source yields the source's own size, so:

- a 640x360 source gets one rendition, 640x360 ("360p"), never 360p blown up to 1080p;
- a 960x540 source gets 540p (its own size), 480p and 360p;
- a source larger than the top box gets every rung, the top one capped at 1080p.

Rungs that come out the same size as a larger one are dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LadderError", "Rung", "RungSpec", "parse_ladder", "select_rungs"]

_SPEC = re.compile(r"^\s*(\d+)p?\s*[:=]\s*(\d+)\s*k?\s*$", re.IGNORECASE)
# Bits per pixel do not grow linearly with the pixel count (x264 predicts smaller
# pictures less well); 0.75 is the usual exponent for scaling a ladder's bitrates.
_BITRATE_EXPONENT = 0.75
# High frame rates need more bits for the same quality; 1.5x is the common uplift for
# 50/60 fps rungs (Apple's HLS authoring specification lists ~1.5-1.6x).
_HIGH_FPS = 31.0
_HIGH_FPS_FACTOR = 1.5


class LadderError(ValueError):
    """The configured ladder cannot be parsed, or the source size is unusable."""


@dataclass(frozen=True, slots=True)
class RungSpec:
    """A configured rung: the height of its 16:9 box and its bitrate cap."""

    height: int
    kbps: int

    @property
    def box(self) -> tuple[int, int]:
        """The landscape box (width, height); 480p is 854x480 as players expect."""
        return _even(self.height * 16 / 9), self.height


@dataclass(frozen=True, slots=True)
class Rung:
    """A rendition to encode."""

    name: str  # "720p"; also the rendition's folder under vod/{video_id}/
    width: int
    height: int
    maxrate_kbps: int  # VBV cap of the capped-CRF encode
    bufsize_kbps: int


def parse_ladder(specs: Sequence[str]) -> list[RungSpec]:
    """``["1080p:5000", "720p:2800"]`` → rungs, largest first."""
    rungs: list[RungSpec] = []
    for spec in specs:
        match = _SPEC.match(spec)
        if not match:
            raise LadderError(f"bad ladder rung {spec!r}: expected '<height>p:<kbps>'")
        height, kbps = int(match.group(1)), int(match.group(2))
        if not 16 <= height <= 4320 or not 50 <= kbps <= 100_000:
            raise LadderError(f"ladder rung {spec!r} is out of range")
        rungs.append(RungSpec(height, kbps))
    if not rungs:
        raise LadderError("the ladder is empty")
    rungs.sort(key=lambda rung: rung.height, reverse=True)
    heights = [rung.height for rung in rungs]
    if len(set(heights)) != len(heights):
        raise LadderError(f"the ladder repeats a height: {heights}")
    return rungs


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _floor_even(value: int) -> int:
    return max(2, value - value % 2)


def _bitrate_for(width: int, height: int, ladder: Sequence[RungSpec], *, portrait: bool) -> float:
    """The cap of the smallest box the picture fits in, scaled down by its pixel count.

    A 640x360 rendition gets the 360p cap whichever rung produced it; a 960x540 one
    gets the 720p cap scaled to its pixels.
    """
    best = ladder[0]
    for spec in ladder:  # largest first: the last box that still fits is the smallest
        box_w, box_h = spec.box[::-1] if portrait else spec.box
        if width <= box_w and height <= box_h:
            best = spec
    box_w, box_h = best.box
    pixels_ratio = min(1.0, (width * height) / (box_w * box_h))
    return best.kbps * math.pow(pixels_ratio, _BITRATE_EXPONENT)


def select_rungs(
    width: int,
    height: int,
    ladder: Sequence[RungSpec],
    *,
    sample_aspect_ratio: float = 1.0,
    fps: float = 30.0,
) -> list[Rung]:
    """The renditions for a ``width`` x ``height`` source (coded size), largest first.

    ``sample_aspect_ratio`` turns anamorphic sources (720x576 at 64:45) into their
    display size first (1024x576); the outputs always have square pixels.
    """
    if width < 2 or height < 2:
        raise LadderError(f"source size {width}x{height} is too small to encode")
    if not ladder:
        raise LadderError("the ladder is empty")
    sar = sample_aspect_ratio if sample_aspect_ratio > 0 else 1.0
    # The display size keeps the coded height and stretches or narrows the width, as
    # ffmpeg's `scale=iw*sar:ih` does; lines are never invented vertically.
    display_w, display_h = width * sar, float(height)
    # Never upscale, not even by a rounding pixel: the display size, even-floored.
    limit_w, limit_h = _floor_even(round(display_w)), _floor_even(round(display_h))
    portrait = display_h > display_w
    rungs: list[Rung] = []
    for spec in ladder:
        box_w, box_h = spec.box
        if portrait:
            box_w, box_h = box_h, box_w
        scale = min(1.0, box_w / display_w, box_h / display_h)
        out_w = min(_even(display_w * scale), limit_w)
        out_h = min(_even(display_h * scale), limit_h)
        if rungs and min(out_w, out_h) >= min(rungs[-1].width, rungs[-1].height):
            continue  # the same size as the rung above (the source was smaller than both)
        short = min(out_w, out_h)
        name = f"{spec.height}p" if scale < 1.0 else f"{short}p"
        kbps = _bitrate_for(out_w, out_h, ladder, portrait=portrait)
        if fps > _HIGH_FPS:
            kbps *= _HIGH_FPS_FACTOR
        rungs.append(
            Rung(
                name=name,
                width=out_w,
                height=out_h,
                maxrate_kbps=max(50, round(kbps)),
                bufsize_kbps=max(100, round(kbps * 2)),
            )
        )
    return rungs
