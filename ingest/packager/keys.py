"""Object keys of live media: the layout the gateway serves (``/live/{stream_id}/…``).

    live/{stream_id}/{session_id}/init.mp4             EXT-X-MAP
    live/{stream_id}/{session_id}/seg{N}.m4s           segment N (its parts, concatenated)
    live/{stream_id}/{session_id}/part{N}.{I}.m4s      part I of segment N
    live/{stream_id}/{session_id}/recording.m3u8       VOD playlist of the ended broadcast
    recordings/{stream_id}/{session_id}.mp4            the whole broadcast (init + segments)
    live/{stream_id}/thumbnail.jpg                     the latest live thumbnail (overwritten)

The session id is part of every key, so a URI never names two different objects and
the gateway may serve them as immutable — except the thumbnail, which is the stream's
current picture and served with a short cache lifetime. ``gateway/live/keys.py`` reads the same
layout (components never import each other; ``tests/unit/test_llhls_keys.py`` checks
that the two agree).
"""

from __future__ import annotations

import re

# Ids become key segments and URI path segments: keep them to a safe alphabet (the
# URL-safe base64 of secrets.token_urlsafe, so an id may start with '-' or '_').
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def check_id(kind: str, value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is not a safe id ([A-Za-z0-9_-], ≤ 128)")
    return value


def session_prefix(stream_id: str, session_id: str) -> str:
    return f"live/{check_id('stream_id', stream_id)}/{check_id('session_id', session_id)}/"


def init_key(stream_id: str, session_id: str) -> str:
    return session_prefix(stream_id, session_id) + "init.mp4"


def segment_key(stream_id: str, session_id: str, sequence: int) -> str:
    return session_prefix(stream_id, session_id) + f"seg{sequence}.m4s"


def part_key(stream_id: str, session_id: str, sequence: int, index: int) -> str:
    return session_prefix(stream_id, session_id) + f"part{sequence}.{index}.m4s"


def recording_playlist_key(stream_id: str, session_id: str) -> str:
    return session_prefix(stream_id, session_id) + "recording.m3u8"


def thumbnail_key(stream_id: str) -> str:
    return f"live/{check_id('stream_id', stream_id)}/thumbnail.jpg"


PART_NAME = re.compile(r"^part(\d+)\.(\d+)\.m4s$")


def recording_key(stream_id: str, session_id: str) -> str:
    return f"recordings/{check_id('stream_id', stream_id)}/{check_id('session_id', session_id)}.mp4"


SEGMENT_NAME = re.compile(r"^seg(\d+)\.m4s$")
SEGMENT_URI = "seg{}.m4s"  # relative to the session's prefix
