"""What the probe concludes: a description of the media, or a rejection users can read.

Shared by the child (which decides) and the parent (which publishes); plain data, so
the child imports nothing heavy.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any, Final

__all__ = ["REASONS", "Accepted", "Code", "Rejected", "Verdict", "from_json", "to_json"]


class Code(enum.StrEnum):
    """``UploadRejected.code`` values (machine-readable)."""

    EMPTY = "empty"
    NOT_MEDIA = "not_media"
    NO_VIDEO = "no_video"
    TOO_LARGE_DIMENSIONS = "too_large_dimensions"
    TOO_LONG = "too_long"
    TOO_MANY_STREAMS = "too_many_streams"
    CORRUPT = "corrupt"
    UNREADABLE = "unreadable"  # the probe hit its time or memory limit


# UploadRejected.reason: what the uploader is told (PeerTube answers 422 with such text).
REASONS: Final[dict[Code, str]] = {
    Code.EMPTY: "The file is empty.",
    Code.NOT_MEDIA: "This file is not a video we can read (MP4, MOV, WebM, MKV, AVI, FLV, TS).",
    Code.NO_VIDEO: "The file has no video track.",
    Code.TOO_LARGE_DIMENSIONS: "The video's picture is too large (16384 pixels or more a side).",
    Code.TOO_LONG: "The video is longer than this site accepts.",
    Code.TOO_MANY_STREAMS: "The file has too many tracks.",
    Code.CORRUPT: "The video is damaged: its pictures cannot be decoded.",
    Code.UNREADABLE: "The file could not be analysed in time; it may be damaged.",
}


@dataclass(frozen=True, slots=True)
class Accepted:
    container: str
    duration_s: float
    width: int
    height: int
    video_codec: str
    audio_codec: str
    fps: float
    bit_rate: int


@dataclass(frozen=True, slots=True)
class Rejected:
    code: Code
    detail: str = ""  # for the logs; never shown to users

    @property
    def reason(self) -> str:
        return REASONS[self.code]


Verdict = Accepted | Rejected


def to_json(verdict: Verdict) -> dict[str, Any]:
    if isinstance(verdict, Accepted):
        return {"ok": True, "probe": asdict(verdict)}
    return {"ok": False, "code": verdict.code.value, "detail": verdict.detail[:2000]}


def from_json(data: Any) -> Verdict:
    """Parse the child's answer; anything malformed is a rejection, not a crash."""
    try:
        if data["ok"] is True:
            probe = data["probe"]
            return Accepted(
                container=str(probe["container"]),
                duration_s=float(probe["duration_s"]),
                width=int(probe["width"]),
                height=int(probe["height"]),
                video_codec=str(probe["video_codec"]),
                audio_codec=str(probe["audio_codec"]),
                fps=float(probe["fps"]),
                bit_rate=int(probe["bit_rate"]),
            )
        return Rejected(Code(data["code"]), str(data.get("detail", "")))
    except (KeyError, TypeError, ValueError):
        return Rejected(Code.UNREADABLE, "malformed answer from the probe")
