"""The event catalog: every event type VideoPick publishes, one Struct each."""

from __future__ import annotations

from typing import Any

import msgspec

from events.catalog.accounts import ChannelKeyRotated, ChannelUpdated, UserRegistered
from events.catalog.chat import (
    ChatAccepted,
    ChatEffect,
    ChatMessage,
    ChatModeration,
    ChatRejected,
    ChatSuperchat,
    ChatTopup,
    ChatUser,
    SuperChatInfo,
)
from events.catalog.live import (
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    StreamStopRequested,
    StreamThumbnail,
)
from events.catalog.media import (
    Rendition,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeRequested,
    VideoDeleted,
    VideoPublished,
)
from events.catalog.stats import StatsIngest, StatsViewers
from events.catalog.uploads import (
    ChunkUploaded,
    MediaProbe,
    UploadCompleted,
    UploadCreated,
    UploadExpired,
    UploadRejected,
)
from events.envelope import Event

EVENT_TYPES: tuple[type[Event], ...] = (
    UserRegistered,
    ChannelKeyRotated,
    ChannelUpdated,
    StreamStarted,
    StreamPart,
    StreamSegment,
    StreamStopRequested,
    StreamEnded,
    StreamRecorded,
    StreamThumbnail,
    UploadCreated,
    ChunkUploaded,
    UploadCompleted,
    UploadRejected,
    UploadExpired,
    TranscodeRequested,
    TranscodeProgress,
    TranscodeCompleted,
    TranscodeFailed,
    VideoPublished,
    VideoDeleted,
    ChatMessage,
    ChatAccepted,
    ChatRejected,
    ChatEffect,
    ChatSuperchat,
    ChatModeration,
    ChatTopup,
    StatsViewers,
    StatsIngest,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {cls.event_type(): cls for cls in EVENT_TYPES}


def _build_decoder() -> msgspec.json.Decoder[Any]:
    union: Any = EVENT_TYPES[0]
    for cls in EVENT_TYPES[1:]:
        union = union | cls
    return msgspec.json.Decoder(union)


_decoder = _build_decoder()


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode any catalog event by its ``type`` tag; raises msgspec errors on bad input."""
    decoded: Event = _decoder.decode(data)
    return decoded


__all__ = [
    "EVENTS_BY_TYPE",
    "EVENT_TYPES",
    "ChannelKeyRotated",
    "ChannelUpdated",
    "ChatAccepted",
    "ChatEffect",
    "ChatMessage",
    "ChatModeration",
    "ChatRejected",
    "ChatSuperchat",
    "ChatTopup",
    "ChatUser",
    "ChunkUploaded",
    "Event",
    "MediaProbe",
    "Rendition",
    "StatsIngest",
    "StatsViewers",
    "StreamEnded",
    "StreamPart",
    "StreamRecorded",
    "StreamSegment",
    "StreamStarted",
    "StreamStopRequested",
    "StreamThumbnail",
    "SuperChatInfo",
    "TranscodeCompleted",
    "TranscodeFailed",
    "TranscodeProgress",
    "TranscodeRequested",
    "UploadCompleted",
    "UploadCreated",
    "UploadExpired",
    "UploadRejected",
    "UserRegistered",
    "VideoDeleted",
    "VideoPublished",
    "decode_event",
    "encode_event",
]
