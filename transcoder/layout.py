"""Object keys of a transcoded video: deterministic, so a rerun overwrites, never adds.

vod/{video_id}/master.m3u8
vod/{video_id}/{rendition}/index.m3u8, init.mp4, seg_00000.m4s, …
vod/{video_id}/poster.jpg
vod/{video_id}/thumbs/thumb_000.jpg, …
vod/{video_id}/sprite.jpg, sprite.vtt
"""

from __future__ import annotations

import re
from typing import Final

from common.store import validate_key

__all__ = [
    "CONTENT_TYPES",
    "INIT_NAME",
    "MASTER_NAME",
    "MEDIA_PLAYLIST_NAME",
    "POSTER_NAME",
    "SEGMENT_PATTERN",
    "SPRITE_NAME",
    "SPRITE_VTT_NAME",
    "check_video_id",
    "content_type_for",
    "thumbnail_name",
    "video_prefix",
]

# Video ids become one key segment and one NATS subject token.
_VIDEO_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")

MASTER_NAME: Final = "master.m3u8"
MEDIA_PLAYLIST_NAME: Final = "index.m3u8"
INIT_NAME: Final = "init.mp4"
# FFmpeg's hls muxer fills in the segment number (printf style).
SEGMENT_PATTERN: Final = "seg_%05d.m4s"
POSTER_NAME: Final = "poster.jpg"
SPRITE_NAME: Final = "sprite.jpg"
SPRITE_VTT_NAME: Final = "sprite.vtt"

CONTENT_TYPES: Final[dict[str, str]] = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
}


def check_video_id(video_id: str) -> str:
    if not _VIDEO_ID.fullmatch(video_id):
        raise ValueError(f"video id {video_id!r} is not 1-128 of [A-Za-z0-9_-]")
    return video_id


def video_prefix(video_id: str) -> str:
    return validate_key(f"vod/{check_video_id(video_id)}") + "/"


def thumbnail_name(index: int) -> str:
    return f"thumbs/thumb_{index:03d}.jpg"


def content_type_for(name: str) -> str:
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:] if dot >= 0 else "", "application/octet-stream")
