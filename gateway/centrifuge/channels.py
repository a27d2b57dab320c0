"""Chat channels (``chat:{stream_id}``) and what their subscribers receive.

A publication's ``data`` is plain JSON, built from the chat events; it is never HTML
and never escaped for HTML: the text a viewer sent is the text every viewer gets,
byte for byte (the web client renders it with ``textContent``). Shapes::

    {"type": "message", "id", "user": {"id", "name"}, "text", "ts"[, "effects"][, "superchat"]}
    {"type": "effect", "window_start_ms", "counts": {"🔥": 3, …}}
    {"type": "moderation", "action", "target_user_id", "seconds", "through_offset", "value"}
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from events.catalog import ChatAccepted, ChatEffect, ChatModeration

CHANNEL_PREFIX: Final = "chat:"
# A stream id is a NATS subject token (it ends the event subjects): no dots, spaces or
# wildcards. The gateway issues URL-safe ids.
_STREAM_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")

_encoder: Final = msgspec.json.Encoder()


def parse_channel(channel: str) -> str | None:
    """The stream id of ``chat:<stream_id>``, or None for any other channel."""
    if not channel.startswith(CHANNEL_PREFIX):
        return None
    stream_id = channel[len(CHANNEL_PREFIX) :]
    return stream_id if _STREAM_ID.fullmatch(stream_id) else None


def channel_name(stream_id: str) -> str:
    return f"{CHANNEL_PREFIX}{stream_id}"


def message_data(event: ChatAccepted) -> bytes:
    body: dict[str, Any] = {
        "type": "message",
        "id": event.message_id,
        "user": {"id": event.user.id, "name": event.user.name},
        "text": event.text,
        "ts": event.ts,
    }
    if event.effects:
        body["effects"] = event.effects
    if event.superchat is not None:
        body["superchat"] = event.superchat
    return _encoder.encode(body)


def effect_data(event: ChatEffect) -> bytes:
    return _encoder.encode(
        {"type": "effect", "window_start_ms": event.window_start_ms, "counts": event.counts}
    )


def moderation_data(event: ChatModeration) -> bytes:
    return _encoder.encode(
        {
            "type": "moderation",
            "action": event.action,
            "target_user_id": event.target_user_id,
            "seconds": event.seconds,
            "through_offset": event.through_offset,
            "value": event.value,
        }
    )
