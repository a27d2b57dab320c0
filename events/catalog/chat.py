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
    """A message the chat component accepted, with its place in the channel's order.

    ``offset`` is the channel's sequence number (1, 2, 3… with no gaps), assigned in the
    chat database in the same transaction that stores the message; ``epoch`` names
    that sequence (a new one if the channel's history is ever reset). Gateways deliver
    in offset order and drop offsets they already delivered, so every client sees
    each message once and in the same order (Centrifugo's stream position).
    """

    key_field: ClassVar[str] = "stream_id"
    message_id: str
    stream_id: str
    user: ChatUser
    text: str
    ts: int  # server time, ms since the epoch
    effects: list[str] = msgspec.field(default_factory=list)
    superchat: SuperChatInfo | None = None
    offset: int = 0
    epoch: str = ""


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
    """A moderation command the chat component applied (``/ban``, ``/slow``…)."""

    key_field: ClassVar[str] = "stream_id"
    stream_id: str
    actor_user_id: str
    # "ban" | "unban" | "timeout" | "slow" | "clear" | "mod" | "unmod" | "ratelimit" |
    # "banword" | "unbanword" | "links"
    action: str
    target_user_id: str = ""
    seconds: int = 0
    # The command message that caused it: its sender's gateway answers the publish.
    message_id: str = ""
    # "clear": every message up to this offset is cleared; "banword": the word;
    # "links": the policy; "ratelimit": "<messages>/<seconds>".
    through_offset: int = 0
    value: str = ""


class ChatTopup(Event, frozen=True, tag="chat.topup"):
    """Credits added to a wallet by an operator (no payment provider yet).

    The chat component's ledger applies it once (transaction ``topup:<event_id>``).
    """

    key_field: ClassVar[str] = "user_id"
    user_id: str
    amount: int  # credits, > 0
    actor_user_id: str = ""
    note: str = ""
