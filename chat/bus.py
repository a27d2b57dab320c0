"""The chat component's broker: what it consumes, answers and publishes.

``create_broker(settings)`` builds it (not connected): the worker starts it, and
``events.asyncapi`` documents it. Handlers reach the :class:`~chat.service.ChatService`
through FastStream's context (``broker.context["chat"]``), set before the broker
starts; they read it themselves: as a ``Context()`` parameter, fast_depends resolved
it in a worker thread for every message (two thread hops per chat message).

Ack policy (events.consumer): every durable subscriber acks after its handler
returned; a transient error (database or NATS hiccup) is nacked with backoff; a
payload that cannot be valid is dead-lettered at once. Redelivery is harmless: the
decision is claimed with its outcome (``chat_outcomes``), top-ups are keyed by their
ledger transaction, users by their id.
"""

from __future__ import annotations

from typing import Final, cast

import msgspec
from faststream.nats import NatsBroker

from chat.service import COMPONENT, ChatService
from common.settings import Settings
from events.broker import create_broker as create_component_broker
from events.catalog import (
    ChatAccepted,
    ChatEffect,
    ChatMessage,
    ChatModeration,
    ChatRejected,
    ChatSuperchat,
    ChatTopup,
    UserRegistered,
)
from events.chat_queries import (
    HISTORY_SUBJECT,
    QUEUE_GROUP,
    WALLET_SUBJECT,
    HistoryQuery,
    WalletQuery,
)
from events.consumer import RetryPolicy, durable_subscriber
from events.declare import declare_publishes

CONTEXT_KEY: Final = "chat"
PUBLISHES: Final = (ChatAccepted, ChatRejected, ChatEffect, ChatSuperchat, ChatModeration)

# A decision that failed to publish is redelivered quickly (the outcome is stored;
# only the publish is repeated), then with growing pauses.
MESSAGE_POLICY: Final = RetryPolicy(max_deliver=6, backoff_s=(0.2, 1.0, 5.0, 30.0), ack_wait_s=30.0)
# Handlers waiting on the decision batcher at once: the size a batch can reach.
# Fetched one at a time, each handed to a worker as it comes (a fetch of n waited for
# n, or its timeout, before events/pull_fetch.py); batching happens after the fetch,
# in chat.batcher.
MESSAGE_WORKERS: Final = 64
# Pull requests outstanding at once on the ``chat`` durable. With one, every message
# costs a fetch round trip before the next can start, and one slow round trip (a
# worker starved of CPU by the fan-out) queues everything behind it. Two messages
# sent within one round trip may then be decided in either order; the decision order
# (the channel's offsets) is the one every subscriber sees.
MESSAGE_FETCHERS: Final = 4
LEDGER_POLICY: Final = RetryPolicy(max_deliver=8, backoff_s=(0.5, 2.0, 10.0, 60.0), ack_wait_s=30.0)


def register(broker: NatsBroker) -> None:
    def service() -> ChatService:
        return cast(ChatService, broker.context.get(CONTEXT_KEY))

    for fetcher in range(MESSAGE_FETCHERS):

        @durable_subscriber(
            broker,
            ChatMessage,
            durable="chat",
            policy=MESSAGE_POLICY,
            batch_size=1,
            max_workers=MESSAGE_WORKERS // MESSAGE_FETCHERS,
            include_in_schema=fetcher == 0,
        )
        async def on_chat_message(event: ChatMessage) -> None:
            await service().on_message(event)

    @durable_subscriber(broker, UserRegistered, durable="chat-users")
    async def on_user_registered(event: UserRegistered) -> None:
        await service().on_user_registered(event)

    @durable_subscriber(broker, ChatTopup, durable="chat-ledger", policy=LEDGER_POLICY)
    async def on_topup(event: ChatTopup) -> None:
        await service().on_topup(event)

    # Reads for the gateways: core request/reply, one queue group (one worker answers).
    @broker.subscriber(HISTORY_SUBJECT, queue=QUEUE_GROUP, title="chat:rpc:history")
    async def history(query: HistoryQuery) -> bytes:
        return msgspec.json.encode(await service().history(query))

    @broker.subscriber(WALLET_SUBJECT, queue=QUEUE_GROUP, title="chat:rpc:wallet")
    async def wallet(query: WalletQuery) -> bytes:
        return msgspec.json.encode(await service().wallet(query))


def create_broker(settings: Settings) -> NatsBroker:
    broker = create_component_broker(settings, name=COMPONENT)
    register(broker)
    declare_publishes(broker, *PUBLISHES, component=COMPONENT)
    return broker
