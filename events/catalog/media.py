"""Transcoding and the video library: ``transcode.*`` and ``video.*``."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from events.envelope import Event


class TranscodeRequested(Event, frozen=True, tag="transcode.requested"):
    key_field: ClassVar[str] = "video_id"
    video_id: str
    user_id: str
    source_key: str
    origin: str  # "upload" | "recording"
    title: str = ""
    description: str = ""
    duration_s: float = 0.0
    width: int = 0
    height: int = 0


class TranscodeProgress(Event, frozen=True, tag="transcode.progress"):
    key_field: ClassVar[str] = "video_id"
    video_id: str
    percent: float  # 0..100
    stage: str  # "decoding" | "encoding" | "thumbnails" | "uploading"
    speed: float = 0.0  # multiple of real time
    eta_s: float = 0.0


class Rendition(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # "1080p"
    width: int
    height: int
    bandwidth: int  # peak bits/s measured from the segments
    average_bandwidth: int
    codecs: str
    playlist_key: str


class TranscodeCompleted(Event, frozen=True, tag="transcode.completed"):
    key_field: ClassVar[str] = "video_id"
    video_id: str
    user_id: str
    master_key: str
    renditions: list[Rendition]
    poster_key: str
    thumbnail_keys: list[str] = msgspec.field(default_factory=list)
    sprite_key: str = ""
    sprite_vtt_key: str = ""
    duration_s: float = 0.0


class TranscodeFailed(Event, frozen=True, tag="transcode.failed"):
    key_field: ClassVar[str] = "video_id"
    video_id: str
    user_id: str
    reason: str
    attempt: int = 1
    permanent: bool = False


class VideoPublished(Event, frozen=True, tag="video.published"):
    key_field: ClassVar[str] = "video_id"
    video_id: str
    user_id: str
    title: str
    description: str
    duration_s: float
    master_key: str
    poster_key: str
    width: int = 0
    height: int = 0
    origin: str = "upload"
    stream_id: str = ""  # set when the video is a recording of a live


class VideoDeleted(Event, frozen=True, tag="video.deleted"):
    """A video its owner deleted: gone from the catalog, its media removed (transcoder)."""

    key_field: ClassVar[str] = "video_id"
    video_id: str
    user_id: str
    # Where its sources lie, as the catalog knew them, so the media cleanup finds them:
    # the upload, or the broadcast a recording was made of. Empty when not known.
    upload_id: str = ""
    stream_id: str = ""
    session_id: str = ""
