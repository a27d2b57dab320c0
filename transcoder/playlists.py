"""The master playlist, from what was actually written.

RFC 8216 §4.3.4.2: BANDWIDTH is the peak segment bit rate of the variant and
AVERAGE-BANDWIDTH the average one; players pick renditions with them, so they are
measured from the stored segments (bytes * 8 / EXTINF duration), not copied from
the encoder's targets. CODECS comes from the encoder's own SPS (profile and level
as x264 chose them), RESOLUTION and FRAME-RATE from the rendition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AAC_LC",
    "MediaSegment",
    "Variant",
    "avc_codec_string",
    "measure_bandwidth",
    "parse_media_playlist",
    "render_master",
]

AAC_LC = "mp4a.40.2"  # RFC 6381: MPEG-4 audio, object type 2 (AAC-LC)
_EXTINF = re.compile(r"^#EXTINF:([0-9.]+)")


@dataclass(frozen=True, slots=True)
class MediaSegment:
    uri: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str  # relative to the master playlist: "720p/index.m3u8"
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    frame_rate: float


def parse_media_playlist(text: str) -> list[MediaSegment]:
    """The segments of a media playlist, in order (URI lines after their EXTINF)."""
    segments: list[MediaSegment] = []
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := _EXTINF.match(line):
            duration = float(match.group(1))
        elif line and not line.startswith("#"):
            if duration is None:
                raise ValueError(f"segment {line!r} has no EXTINF")
            segments.append(MediaSegment(line, duration))
            duration = None
    return segments


def measure_bandwidth(
    segments: Sequence[MediaSegment], sizes: Mapping[str, int]
) -> tuple[int, int]:
    """(peak, average) bits per second over ``segments`` whose byte sizes are ``sizes``.

    The peak ignores segments under half a second: a final 0.1 s sliver holding one
    keyframe would otherwise read as a huge rate no player ever has to sustain.
    """
    total_bytes = 0
    total_s = 0.0
    peak = 0.0
    for segment in segments:
        size = sizes[segment.uri]
        total_bytes += size
        total_s += segment.duration_s
        if segment.duration_s >= 0.5 or len(segments) == 1:
            peak = max(peak, size * 8 / max(segment.duration_s, 1e-3))
    if total_s <= 0:
        raise ValueError("no media duration to measure")
    average = total_bytes * 8 / total_s
    return max(1, round(max(peak, average))), max(1, round(average))


def _sps_from(extradata: bytes) -> bytes:
    """The SPS NAL unit (without its header byte) in avcC or Annex B extradata."""
    if len(extradata) >= 4 and extradata[0] == 1:  # avcC (ISO/IEC 14496-15 §5.3.3.1)
        return extradata[1:4]
    for start in (m.end() for m in re.finditer(b"\x00\x00\x01", extradata)):
        if start < len(extradata) and extradata[start] & 0x1F == 7:  # nal_unit_type 7: SPS
            return extradata[start + 1 : start + 4]
    raise ValueError("no H.264 SPS in the encoder's extradata")


def avc_codec_string(extradata: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL``: profile_idc, constraint flags, level_idc of the SPS."""
    sps = _sps_from(extradata)
    if len(sps) < 3:
        raise ValueError("truncated H.264 SPS")
    return f"avc1.{sps[0]:02x}{sps[1]:02x}{sps[2]:02x}"


def _attribute_list(variant: Variant) -> str:
    return ",".join(
        [
            f"BANDWIDTH={variant.bandwidth}",
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
            f"RESOLUTION={variant.width}x{variant.height}",
            f'CODECS="{variant.codecs}"',
            f"FRAME-RATE={variant.frame_rate:.3f}",
        ]
    )


def render_master(variants: Sequence[Variant]) -> str:
    """The master playlist, highest bandwidth first.

    Version 7: fMP4 segments with EXT-X-MAP need 6+ (RFC 8216 §7); FFmpeg's media
    playlists declare 7. Every segment starts with an aligned IDR frame, hence
    EXT-X-INDEPENDENT-SEGMENTS.
    """
    if not variants:
        raise ValueError("a master playlist needs at least one variant")
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in sorted(variants, key=lambda v: v.bandwidth, reverse=True):
        lines += [f"#EXT-X-STREAM-INF:{_attribute_list(variant)}", variant.uri]
    return "\n".join(lines) + "\n"
