"""Playlist and media checks shared by the live tests, with the ``m3u8`` package.

A playlist must parse in strict mode (every line a tag ``m3u8`` knows), keep the
LL-HLS duration rules, and every segment and part it names must decode with PyAV
after the init segment.
"""

from __future__ import annotations

import io
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import av
import m3u8

Fetch = Callable[[str], Awaitable[bytes]]  # playlist-relative URI → bytes


@dataclass(frozen=True)
class Checked:
    playlist: m3u8.M3U8
    segment_uris: list[str]
    part_uris: list[list[str]]  # per segment listing parts (the open one last)
    segments_s: float  # sum of the EXTINF durations
    discontinuities: int


def check_playlist(text: str, *, live: bool) -> Checked:
    playlist = m3u8.M3U8(text, strict=True)
    target = playlist.target_duration
    assert target is not None
    assert target >= 1
    part_target = float(playlist.part_inf.part_target)
    assert part_target > 0
    assert playlist.is_endlist is (not live)
    assert (playlist.preload_hint is not None) is live  # never with ENDLIST (§4.4.5.3)
    segments = [s for s in playlist.segments if s.uri]
    trailing = [s for s in playlist.segments if not s.uri]  # the open segment's parts
    segment_uris, part_uris = [], []
    for segment in segments:
        # §4.4.3.1: every EXTINF rounds to at most TARGETDURATION.
        assert round(segment.duration) <= target, (segment.uri, segment.duration)
        segment_uris.append(segment.uri)
        if segment.parts:
            parts_s = sum(p.duration for p in segment.parts)
            assert math.isclose(parts_s, segment.duration, abs_tol=0.002), segment.uri
    for segment in [*segments, *trailing]:
        if segment.parts:
            part_uris.append([p.uri for p in segment.parts])
        for part in segment.parts or []:
            assert part.duration <= part_target + 1e-6, (part.uri, part.duration)
    if not live:
        assert part_uris == []  # an ended broadcast lists segments only
    return Checked(
        playlist=playlist,
        segment_uris=segment_uris,
        part_uris=part_uris,
        segments_s=sum(s.duration for s in segments),
        discontinuities=sum(1 for s in playlist.segments if s.discontinuity),
    )


def decoded_video_frames(init: bytes, *media: bytes) -> int:
    """Frames of the init segment followed by ``media``, decoded with PyAV."""
    with av.open(io.BytesIO(init + b"".join(media)), mode="r", format="mp4") as container:
        return len(list(container.decode(container.streams.video[0])))


async def check_media(checked: Checked, init_uri: str, fetch: Fetch) -> int:
    """Every segment decodes after the init segment, and every part adds frames to the
    parts of its segment before it (a part need not start with a keyframe). Returns the
    frames of the segments."""
    init = await fetch(init_uri)
    frames = 0
    for uri in checked.segment_uris:
        count = decoded_video_frames(init, await fetch(uri))
        assert count > 0, uri
        frames += count
    for uris in checked.part_uris:
        data, seen = b"", 0
        for uri in uris:
            data += await fetch(uri)
            count = decoded_video_frames(init, data)
            assert count > seen, uri
            seen = count
    return frames


def check_recording_playlist(text: str) -> Checked:
    """A broadcast's VOD playlist: strict parse, VOD, ENDLIST, EXTINF ≤ TARGETDURATION."""
    playlist = m3u8.M3U8(text, strict=True)
    assert playlist.playlist_type == "vod"
    assert playlist.is_endlist
    assert playlist.target_duration is not None
    assert playlist.segment_map[0].uri == "init.mp4"
    for segment in playlist.segments:
        assert round(segment.duration) <= playlist.target_duration, segment.uri
        assert not segment.parts
    return Checked(
        playlist=playlist,
        segment_uris=[s.uri for s in playlist.segments],
        part_uris=[],
        segments_s=sum(s.duration for s in playlist.segments),
        discontinuities=sum(1 for s in playlist.segments if s.discontinuity),
    )
