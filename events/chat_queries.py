"""Read-only queries the chat component answers over NATS request/reply.

The chat component owns the chat history and the wallet ledger; the gateway asks it
instead of reading its tables (a component writes and reads only its own tables).
Changes still travel as events (``chat.message``, ``chat.topup``); these are reads.

Subjects are under ``rpc.``, outside every JetStream stream: a request on a subject a
stream captures (``chat.>``) would be stored and answered by JetStream's PubAck
instead of the responder. Requests and replies are JSON (msgspec); a reply with a
non-empty ``error`` failed.
"""

from __future__ import annotations

from typing import Final

import msgspec

from events.catalog.chat import ChatAccepted

HISTORY_SUBJECT: Final = "rpc.chat.history"
WALLET_SUBJECT: Final = "rpc.chat.wallet"
# Between gateways (gateway/centrifuge/presence.py): ``<PRESENCE_SUBJECT>.<stream_id>``
# carries one gateway's members of a room; the sync subject asks all to announce.
PRESENCE_SUBJECT: Final = "rpc.chat.presence"
PRESENCE_SYNC_SUBJECT: Final = "rpc.chat.presence-sync"
# The chat workers share these subjects as one queue group: one of them answers.
QUEUE_GROUP: Final = "chat-rpc"
MAX_HISTORY_LIMIT: Final = 500


class HistoryQuery(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    limit: int = 50
    # None: the latest ``limit`` messages. A number: the messages after that offset,
    # at most ``limit`` (``complete`` says whether that reached the latest one).
    after_offset: int | None = None
    # > 0 (and no after_offset): the latest ``limit`` messages before that offset.
    before_offset: int = 0


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    epoch: str = ""
    offset: int = 0  # the channel's latest offset
    # Oldest first, whatever the query.
    messages: list[ChatAccepted] = msgspec.field(default_factory=list)
    complete: bool = True
    error: str = ""


class WalletQuery(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    limit: int = 20
    # Set to ask whether this ledger transaction is applied yet (a top-up's
    # ``topup:<event_id>``).
    tx_id: str = ""


class LedgerEntryView(msgspec.Struct, frozen=True, kw_only=True):
    tx_id: str
    kind: str  # "topup" | "superchat_sent" | "superchat_received"
    amount: int  # signed: credits in (+) or out (-) of this wallet
    created_at_ms: int
    counterparty_user_id: str = ""
    stream_id: str = ""
    message_id: str = ""
    text: str = ""


class WalletView(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str = ""
    balance: int = 0
    entries: list[LedgerEntryView] = msgspec.field(default_factory=list)
    earnings_total: int = 0
    earnings_count: int = 0
    earnings: list[LedgerEntryView] = msgspec.field(default_factory=list)
    tx_applied: bool = False
    error: str = ""


class PresenceAnnouncement(msgspec.Struct, frozen=True, kw_only=True):
    """Who one gateway process has in one room, valid for ``ttl_s`` seconds.

    ``clients`` 0: the gateway has nobody there any more. ``users`` lists the user ids
    (anonymous viewers have none); it is empty for a room too big to list, and then
    ``user_count`` is all there is.
    """

    gateway_id: str
    stream_id: str
    clients: int
    user_count: int
    users: list[str] = msgspec.field(default_factory=list)
    ttl_s: float = 15.0
