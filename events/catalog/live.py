"""Live streams: ``stream.*`` (lifecycle, LL-HLS parts and segments, recordings)."""

from __future__ import annotations

import uuid
from typing import ClassVar, Final

from events.envelope import Event

# uuid5 namespace for recording video ids (a fixed random UUID, never change it).
RECORDING_NAMESPACE: Final = uuid.UUID("6b3f0f0e-5f0a-4a53-9d3c-1f0c9c7e2b41")


def recording_video_id(stream_id: str, session_id: str) -> str:
    """The video id of a broadcast's recording (``stream.recorded``'s ``video_id``): the
    same every time it is derived, by ingest that builds it and the gateway that serves it."""
    return str(uuid.uuid5(RECORDING_NAMESPACE, f"{stream_id}/{session_id}"))


class StreamStarted(Event, frozen=True, tag="stream.started"):
    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str  # one broadcast; a channel has many over time
    user_id: str
    video_codec: str  # RFC 6381 codec string, e.g. avc1.64001f
    audio_codec: str = ""  # e.g. mp4a.40.2; empty for video-only
    width: int = 0
    height: int = 0
    fps: float = 0.0
    init_key: str = ""  # object key of the fMP4 init segment
    part_target_s: float = 0.0
    segment_target_s: float = 0.0


class StreamPart(Event, frozen=True, tag="stream.part"):
    """One LL-HLS partial segment, durable in the object store."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    sequence: int  # media sequence number of the segment this part belongs to
    part_index: int
    duration_s: float
    object_key: str
    byte_size: int
    independent: bool  # starts with a keyframe
    # The first part after the publisher reconnected (EXT-X-DISCONTINUITY).
    discontinuity: bool = False


class StreamSegment(Event, frozen=True, tag="stream.segment"):
    """A whole segment (its parts concatenated), durable in the object store."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    sequence: int
    duration_s: float
    object_key: str
    byte_size: int
    keyframe: bool  # starts with a keyframe (always, unless the publisher sent none)
    part_count: int = 0
    program_date_time: str = ""  # ISO 8601 wall clock of the first frame
    # The first segment after the publisher reconnected (EXT-X-DISCONTINUITY).
    discontinuity: bool = False


class StreamStopRequested(Event, frozen=True, tag="stream.stop_requested"):
    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    user_id: str
    reason: str = "owner"


class StreamEnded(Event, frozen=True, tag="stream.ended"):
    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    reason: str  # "publisher_left" | "stop_requested" | "timeout" | "error"
    duration_s: float = 0.0
    segment_count: int = 0


class StreamRecorded(Event, frozen=True, tag="stream.recorded"):
    """A finished broadcast stored as one object, ready to become a video."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    user_id: str
    video_id: str
    object_key: str
    duration_s: float
    byte_size: int
    title: str = ""
    description: str = ""  # the broadcast's, as set by POST /api/v2/streams/start
    # An HLS VOD playlist of the broadcast's own segments (playable at once; no re-encode).
    playlist_key: str = ""


class StreamThumbnail(Event, frozen=True, tag="stream.thumbnail"):
    """A fresh JPEG of a live stream (one keyframe), overwriting the previous one.

    Served by the gateway at ``/live/{stream_id}/thumbnail.jpg``.
    """

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    session_id: str
    object_key: str
    width: int
    height: int
    byte_size: int
