"""Live chat: ``chat.*``. The chat component decides; gateways fan out."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from events.envelope import Event


class ChatUser(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str


class SuperChatInfo(msgspec.Struct, frozen=True, kw_only=True):
    amount: int  # credits
    tier: int
    color: str
    pin_seconds: int


class ChatMessage(Event, frozen=True, tag="chat.message"):
    """A viewer's publish, as received by a gateway; not yet accepted."""

    key_field: ClassVar[str] = "stream_id"
    message_id: str
    stream_id: str
    user: ChatUser
    text: str
    amount: int = 0  # > 0 makes it a super chat
    gateway_id: str = ""  # routes a rejection back to the sender
    client_id: str = ""


class ChatAccepted(Event, frozen=True, tag="chat.accepted"):
    key_field: ClassVar[str] = "stream_id"
    message_id: str
    stream_id: str
    user: ChatUser
    text: str
    ts: int  # server time, ms since the epoch
    effects: list[str] = msgspec.field(default_factory=list)
    superchat: SuperChatInfo | None = None


class ChatRejected(Event, frozen=True, tag="chat.rejected"):
    key_field: ClassVar[str] = "stream_id"
    message_id: str
    stream_id: str
    user_id: str
    code: str  # "too_long" | "rate_limited" | "slow_mode" | "banned" | …
    reason: str
    gateway_id: str = ""
    client_id: str = ""


class ChatEffect(Event, frozen=True, tag="chat.effect"):
    """Effect emoji counted per channel over one second, for viewer animations."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    window_start_ms: int
    counts: dict[str, int]


class ChatSuperchat(Event, frozen=True, tag="chat.superchat"):
    key_field: ClassVar[str] = "stream_id"
    message_id: str
    stream_id: str
    from_user_id: str
    to_user_id: str
    amount: int
    tier: int
    color: str
    pin_seconds: int
    text: str


class ChatModeration(Event, frozen=True, tag="chat.moderation"):
    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    actor_user_id: str
    action: str  # "ban" | "unban" | "timeout" | "slow" | "clear" | "mod"
    target_user_id: str = ""
    seconds: int = 0
