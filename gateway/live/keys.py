"""Live media URIs and the object keys behind them.

The packager stores a session's media under ``live/{stream_id}/{session_id}/``
(``ingest/packager/keys.py`` writes this layout; ``tests/unit/test_llhls_keys.py``
checks the two agree). The playlist at ``/live/{stream_id}/index.m3u8`` names them
relative to itself as ``{session_id}/{name}``, so the media route is
``/live/{stream_id}/{session_id}/{name}`` and maps one to one onto a key.
"""

from __future__ import annotations

import re
from typing import Final

ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
# Only these names are ever served: no path tricks reach the store (RELIABILITY.md).
MEDIA_NAME: Final = re.compile(
    r"^(?:init\.mp4|seg(\d{1,9})\.m4s|part(\d{1,9})\.(\d{1,4})\.m4s|recording\.m3u8)$"
)
# The ended broadcast's VOD playlist, written once by ingest next to its segments.
RECORDING_PLAYLIST: Final = "recording.m3u8"
KEY_PREFIX: Final = "live/"


def is_id(value: str) -> bool:
    return ID.fullmatch(value) is not None


def object_key(stream_id: str, session_id: str, name: str) -> str | None:
    """The store key of a media URI, or None when any piece is not one we serve."""
    if not (is_id(stream_id) and is_id(session_id) and MEDIA_NAME.fullmatch(name)):
        return None
    return f"{KEY_PREFIX}{stream_id}/{session_id}/{name}"


def uri_of(stream_id: str, key: str) -> str:
    """The playlist-relative URI of a stored object (``{session_id}/{name}``)."""
    prefix = f"{KEY_PREFIX}{stream_id}/"
    if not key.startswith(prefix):
        raise ValueError(f"{key!r} is not live media of stream {stream_id!r}")
    return key[len(prefix) :]


def thumbnail_key(stream_id: str) -> str | None:
    """The stream's latest live thumbnail (``ingest/packager/keys.py``), overwritten in place."""
    return f"{KEY_PREFIX}{stream_id}/thumbnail.jpg" if is_id(stream_id) else None


def init_uri(session_id: str) -> str:
    return f"{session_id}/init.mp4"


def segment_uri(session_id: str, sequence: int) -> str:
    return f"{session_id}/seg{sequence}.m4s"


def part_uri(session_id: str, sequence: int, index: int) -> str:
    return f"{session_id}/part{sequence}.{index}.m4s"


def parse_part_name(name: str) -> tuple[int, int] | None:
    """(sequence, index) of ``part{N}.{I}.m4s``; None for other names."""
    match = MEDIA_NAME.fullmatch(name)
    if match is None or match.group(2) is None:
        return None
    return int(match.group(2)), int(match.group(3))
