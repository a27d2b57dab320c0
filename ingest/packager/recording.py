"""A finished broadcast as one object: the init segment and every stored segment, joined;
as a VOD playlist of those segments (:func:`vod_playlist`), playable at once; and as a
video's master playlist (:func:`recording_master`) at ``vod/{video_id}/master.m3u8``
naming that VOD playlist, so ``/vod/{video_id}/master.m3u8`` plays the recording before
any transcode (which later overwrites the master with its ladder's).

The result is a fragmented MP4 (ISO/IEC 14496-12 §8.8: ``moov`` with ``mvex``, then
``moof``+``mdat`` pairs) that PyAV, FFmpeg and browsers play as a file, with no
re-encoding and no second copy of the media in memory: the segments stream from the
store into the new object.

Built from what the store holds (not from memory), so it can be built again after a
crash, and idempotent: the object key and the ``video_id`` are derived from the
session, so doing it twice yields the same object and the same video.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from common.store import ObjectStore
from events.catalog.live import RECORDING_NAMESPACE
from ingest.packager import keys


@dataclass(frozen=True, slots=True)
class StoredSegment:
    sequence: int
    duration_s: float
    discontinuity: bool  # the first after a publisher's reconnect
    byte_size: int = 0  # for the master playlist's BANDWIDTH


def vod_playlist(segments: Sequence[StoredSegment], target_duration_s: int) -> str:
    """An HLS VOD playlist (RFC 8216bis §4.4.3.5 PLAYLIST-TYPE VOD) of the broadcast's
    segments, next to them in the store (URIs are relative). A reconnect, or a segment
    that never reached the store, is an EXT-X-DISCONTINUITY (§4.4.4.3)."""
    ordered = sorted(segments, key=lambda s: s.sequence)
    longest = max((round(s.duration_s) for s in ordered), default=1)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",  # fMP4 with EXT-X-MAP (§8)
        f"#EXT-X-TARGETDURATION:{max(target_duration_s, longest, 1)}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        f"#EXT-X-MEDIA-SEQUENCE:{ordered[0].sequence if ordered else 0}",
        '#EXT-X-MAP:URI="init.mp4"',
    ]
    previous: int | None = None
    for segment in ordered:
        missing = previous is not None and segment.sequence != previous + 1
        if segment.discontinuity or missing:
            lines.append("#EXT-X-DISCONTINUITY")
        duration = f"{math.floor(segment.duration_s * 1e5 + 0.5) / 1e5:.5f}"
        lines += [f"#EXTINF:{duration},", keys.SEGMENT_URI.format(segment.sequence)]
        previous = segment.sequence
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Variant:
    """What the packager knows of the broadcast's media (``stream.started``)."""

    width: int
    height: int
    fps: float
    codecs: str  # RFC 6381, e.g. "avc1.64001f,mp4a.40.2"


def recording_master(
    segments: Sequence[StoredSegment], variant: Variant, media_playlist_uri: str
) -> str:
    """A master playlist (RFC 8216bis §4.4.6) with the recording as its one variant.

    BANDWIDTH is the peak segment bit rate and AVERAGE-BANDWIDTH the whole broadcast's
    (§4.4.6.2), both measured from the stored bytes, so a player's first pick is right.
    """
    timed = [s for s in segments if s.duration_s > 0 and s.byte_size > 0]
    peak = max((s.byte_size * 8 / s.duration_s for s in timed), default=0.0)
    seconds = sum(s.duration_s for s in timed)
    average = sum(s.byte_size for s in timed) * 8 / seconds if seconds else 0.0
    attributes = [f"BANDWIDTH={max(1, math.ceil(peak))}"]
    attributes.append(f"AVERAGE-BANDWIDTH={max(1, math.ceil(average))}")
    if variant.width and variant.height:
        attributes.append(f"RESOLUTION={variant.width}x{variant.height}")
    if variant.codecs:
        attributes.append(f'CODECS="{variant.codecs}"')
    if variant.fps > 0:
        attributes.append(f"FRAME-RATE={variant.fps:.3f}")
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-INDEPENDENT-SEGMENTS",  # every segment starts on a keyframe
        "#EXT-X-STREAM-INF:" + ",".join(attributes),
        media_playlist_uri,
    ]
    return "\n".join(lines) + "\n"


def master_key(video_id: str) -> str:
    """Where the video's master playlist lives (the gateway's ``/vod/{video_id}/``)."""
    return f"vod/{keys.check_id('video_id', video_id)}/master.m3u8"


def poster_key(video_id: str) -> str:
    """The recording's poster until the transcode makes one: the broadcast's last live
    thumbnail, copied (the live one is overwritten by the channel's next broadcast). Not
    the transcoder's ``poster.jpg``: both are served immutable, so never one key for two
    pictures."""
    return f"vod/{keys.check_id('video_id', video_id)}/live-poster.jpg"


def master_uri_of(playlist_key: str) -> str:
    """The recording's VOD playlist as seen from ``/vod/{video_id}/master.m3u8``: relative
    (``../../live/…``), so the master works behind any path prefix; the gateway's live
    routes serve it and the segments it names, immutable."""
    return "../../" + playlist_key


def published_event_id(video_id: str) -> str:
    """The recording's ``video.published`` id: the same for every attempt, so JetStream
    drops a second copy (``Nats-Msg-Id``) and no replay makes a second video."""
    return str(uuid.uuid5(RECORDING_NAMESPACE, f"{video_id}/video.published"))


async def stored_segment_keys(store: ObjectStore, stream_id: str, session_id: str) -> list[str]:
    """The session's segment objects in media-sequence order (a lost one is skipped)."""
    prefix = keys.session_prefix(stream_id, session_id)
    found: list[tuple[int, str]] = []
    async for info in store.list(prefix):
        match = keys.SEGMENT_NAME.fullmatch(info.key[len(prefix) :])
        if match and info.size > 0:
            found.append((int(match.group(1)), info.key))
    return [key for _, key in sorted(found)]


async def build_recording(
    store: ObjectStore, stream_id: str, session_id: str
) -> tuple[str, int, int] | None:
    """Write the recording; returns (object key, byte size, segment count) or None if empty."""
    segment_keys = await stored_segment_keys(store, stream_id, session_id)
    if not segment_keys:
        return None
    init = await store.read(keys.init_key(stream_id, session_id))

    async def body() -> AsyncIterator[bytes]:
        yield init
        for key in segment_keys:
            async with await store.get(key) as stream:
                async for chunk in stream:
                    yield chunk

    key = keys.recording_key(stream_id, session_id)
    info = await store.put(key, body(), content_type="video/mp4")
    return key, info.size, len(segment_keys)
