"""Delivery guarantees on a real JetStream: crash before ack, retries, dead letters.

The consumer under test is always ``durable_subscriber`` on a ``create_broker`` broker,
i.e. the ack policy every component runs with.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from faststream.nats import NatsBroker, NatsMessage
from nats.js import JetStreamContext
from sqlalchemy import Column, Integer, MetaData, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import create_engine, session_factory
from common.idempotency import ProcessedEvent
from common.settings import Settings, load_settings
from events.broker import create_broker
from events.catalog import ChatMessage, StreamStarted, decode_event
from events.consumer import RetryPolicy, durable_subscriber, run_once
from events.deadletters import DEAD_LETTER_STREAM, list_dead_letters, redrive
from events.errors import PermanentError
from events.publisher import EventPublisher
from tests.unit.test_events_catalog import sample_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0

# --- helpers ---------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, deadline_s: float = DEADLINE_S, what: str = ""
) -> None:
    """Poll a server-side condition until it holds; fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s}s waiting for {what or condition}")
        await asyncio.sleep(0.05)


async def stream_count(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def settled(js: JetStreamContext, stream: str, consumer: str) -> bool:
    """Everything delivered to ``consumer`` is acknowledged (or terminated)."""
    info = await js.consumer_info(stream, consumer)
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="delivery-test")
    yield broker
    await broker.stop()


async def publish(broker: NatsBroker, event: StreamStarted | ChatMessage) -> None:
    await EventPublisher(broker, producer="delivery-test").publish(event)


# --- killed after the side effect, before the ack ------------------------------------

KILL_CONSUMER = "kill-test"
# ack_wait 2 s: the redelivery after the kill comes quickly, and a slow first commit
# on a loaded machine still finishes inside it.
KILL_POLICY = RetryPolicy(max_deliver=5, backoff_s=(0.2,), ack_wait_s=2.0)
EFFECTS = Table(
    "test_kill_effects",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Text, nullable=False),  # no unique key: a repeat would show
)


def _effect(event: StreamStarted) -> Callable[[AsyncSession], Awaitable[None]]:
    async def effect(session: AsyncSession) -> None:
        await session.execute(EFFECTS.insert().values(event_id=event.event_id))

    return effect


def killed_consumer_main() -> None:
    """Entry point of the child process: handle one event, commit, SIGKILL itself."""
    nats_url, database_url = sys.argv[1], sys.argv[2]

    async def run() -> None:
        settings = load_settings({"VIDEOPICK_NATS_URL": nats_url})
        sessions = session_factory(create_engine(database_url))
        broker = create_broker(settings, name="kill-test-child")

        @durable_subscriber(broker, StreamStarted, durable=KILL_CONSUMER, policy=KILL_POLICY)
        async def handler(event: StreamStarted) -> None:
            await run_once(sessions, KILL_CONSUMER, event, _effect(event))
            # The effect and its processed-event row are committed; die before the
            # handler returns, so the ack is never sent.
            os.kill(os.getpid(), signal.SIGKILL)

        await broker.start()
        await asyncio.Event().wait()

    asyncio.run(run())


async def _effects(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(EFFECTS.c.event_id))).scalars())


async def _claims(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(ProcessedEvent.consumer, ProcessedEvent.event_id))
        return [(consumer, event_id) for consumer, event_id in rows]


async def test_a_consumer_killed_before_its_ack_does_not_repeat_the_effect(
    broker: NatsBroker,
    settings: Settings,
    event_streams: JetStreamContext,
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(EFFECTS.metadata.create_all)
        await broker.start()
        event = sample_event(StreamStarted)
        await publish(broker, event)

        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from tests.integration.test_events_delivery import killed_consumer_main as m; m()",
            settings.resolved_nats_url,
            database_url,
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
        assert await _effects(engine) == [event.event_id]  # committed before the kill

        # A fresh replica of the same durable consumer gets the unacknowledged event.
        seen: list[tuple[int, bool]] = []
        handled = asyncio.Event()
        replica = create_broker(settings, name="kill-test-replica")

        @durable_subscriber(replica, StreamStarted, durable=KILL_CONSUMER, policy=KILL_POLICY)
        async def handler(event: StreamStarted, msg: NatsMessage) -> None:
            applied = await run_once(sessions, KILL_CONSUMER, event, _effect(event))
            seen.append((msg.raw_message.metadata.num_delivered, applied))
            handled.set()

        try:
            await replica.start()
            await asyncio.wait_for(handled.wait(), DEADLINE_S)
            await wait_until(
                lambda: settled(event_streams, "STREAMS", KILL_CONSUMER), what="the ack"
            )
        finally:
            await replica.stop()

        [(delivery, applied)] = seen
        assert delivery >= 2  # a redelivery (2, unless the machine was very slow)
        assert applied is False  # recognised as done: run_once skipped the effect
        assert await _effects(engine) == [event.event_id]  # exactly once
        assert await _claims(sessions) == [(KILL_CONSUMER, event.event_id)]
    finally:
        await engine.dispose()


# --- transient errors ----------------------------------------------------------------


async def test_a_transient_error_is_retried_with_growing_delay(
    broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    policy = RetryPolicy(max_deliver=5, backoff_s=(0.25, 1.25), ack_wait_s=10.0)
    deliveries: list[tuple[int, float]] = []
    succeeded = asyncio.Event()

    @durable_subscriber(broker, ChatMessage, durable="retry-test", policy=policy)
    async def handler(event: ChatMessage, msg: NatsMessage) -> None:
        deliveries.append((msg.raw_message.metadata.num_delivered, time.monotonic()))
        if len(deliveries) < 3:
            raise ConnectionError("the database is briefly away")
        succeeded.set()

    await broker.start()
    await publish(broker, sample_event(ChatMessage))
    await asyncio.wait_for(succeeded.wait(), DEADLINE_S)
    await wait_until(lambda: settled(event_streams, "CHAT", "retry-test"), what="the ack")

    assert [number for number, _ in deliveries] == [1, 2, 3]
    first_gap = deliveries[1][1] - deliveries[0][1]
    second_gap = deliveries[2][1] - deliveries[1][1]
    # Each retry waits at least its backoff step (a little slack for clock reads),
    # and the second wait is the longer one.
    assert first_gap >= 0.25 * 0.9, first_gap
    assert second_gap >= 1.25 * 0.9, second_gap
    assert second_gap > first_gap
    assert await stream_count(event_streams, DEAD_LETTER_STREAM) == 0


# --- poison and dead letters -----------------------------------------------------------


@pytest.mark.parametrize("failure", ["permanent", "exhausted"])
async def test_poison_is_dead_lettered_and_redrive_brings_it_back(
    broker: NatsBroker, event_streams: JetStreamContext, failure: str
) -> None:
    policy = RetryPolicy(max_deliver=3, backoff_s=(0.1,), ack_wait_s=10.0)
    durable = f"poison-{failure}"
    state = {"fixed": False}
    attempts: list[int] = []
    processed: list[tuple[ChatMessage, dict[str, str]]] = []
    done = asyncio.Event()

    @durable_subscriber(broker, ChatMessage, durable=durable, policy=policy)
    async def handler(event: ChatMessage, msg: NatsMessage) -> None:
        attempts.append(msg.raw_message.metadata.num_delivered)
        if not state["fixed"]:
            if failure == "permanent":
                raise PermanentError("moderation rule table is corrupt")
            raise RuntimeError("downstream still unavailable")
        processed.append((event, dict(msg.headers)))
        done.set()

    await broker.start()
    event = sample_event(ChatMessage)
    await publish(broker, event)

    await wait_until(
        lambda: _has_messages(event_streams, DEAD_LETTER_STREAM, 1), what="the dead letter"
    )
    await wait_until(lambda: settled(event_streams, "CHAT", durable), what="the term")
    expected_deliveries = 1 if failure == "permanent" else policy.max_deliver
    assert attempts == list(range(1, expected_deliveries + 1))

    [letter] = await list_dead_letters(event_streams, consumer=durable)
    assert letter.original_subject == event.subject()
    assert letter.original_stream == "CHAT"
    assert letter.consumer == durable
    assert letter.deliveries == expected_deliveries
    assert letter.original_msg_id == event.event_id
    assert letter.error == (
        "PermanentError: moderation rule table is corrupt"
        if failure == "permanent"
        else "RuntimeError: downstream still unavailable"
    )
    assert decode_event(letter.data) == event

    state["fixed"] = True
    [(_, ack)] = await redrive(event_streams, [letter])
    assert ack.stream == "CHAT"
    assert not ack.duplicate
    await asyncio.wait_for(done.wait(), DEADLINE_S)

    [(got, headers)] = processed
    assert got == event
    assert headers["Nats-Msg-Id"] == f"{event.event_id}:redrive:{letter.seq}"
    assert headers["correlation_id"] == event.correlation_id  # kept through the detour
    assert await stream_count(event_streams, DEAD_LETTER_STREAM) == 0
    await wait_until(lambda: settled(event_streams, "CHAT", durable), what="the ack")


async def _has_messages(js: JetStreamContext, stream: str, count: int) -> bool:
    return await stream_count(js, stream) >= count


@pytest.mark.parametrize(
    "payload",
    [b"{not json", b'{"type": "chat.message", "stream_id": "r1"}'],
    ids=["undecodable", "invalid"],
)
async def test_a_payload_that_cannot_be_decoded_is_dead_lettered_at_once(
    broker: NatsBroker, event_streams: JetStreamContext, payload: bytes
) -> None:
    called: list[ChatMessage] = []

    @durable_subscriber(
        broker, ChatMessage, durable="garbage-test", policy=RetryPolicy(max_deliver=5)
    )
    async def handler(event: ChatMessage) -> None:
        called.append(event)

    await broker.start()
    await event_streams.publish("chat.message.r1", payload, headers={"Nats-Msg-Id": "junk-1"})

    await wait_until(
        lambda: _has_messages(event_streams, DEAD_LETTER_STREAM, 1), what="the dead letter"
    )
    await wait_until(lambda: settled(event_streams, "CHAT", "garbage-test"), what="the term")
    [letter] = await list_dead_letters(event_streams)
    assert letter.deliveries == 1  # never retried: retrying cannot fix a payload
    assert letter.data == payload
    assert letter.original_msg_id == "junk-1"
    assert "ValidationError" in letter.error
    assert called == []


# --- batches -------------------------------------------------------------------------


async def test_a_batch_is_acked_together_and_a_poison_message_leaves_alone(
    broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    durable = "batch-test"
    batches: list[list[str]] = []
    received = asyncio.Event()

    @durable_subscriber(
        broker,
        ChatMessage,
        durable=durable,
        policy=RetryPolicy(max_deliver=5),
        batch_window_s=0.5,
        batch_size=16,
    )
    async def handler(events: list[ChatMessage]) -> None:
        batches.append([event.event_id for event in events])
        if sum(map(len, batches)) == 3:
            received.set()

    events = [sample_event(ChatMessage, variant) for variant in range(3)]
    await broker.connect()  # publish everything before the consumer starts
    for event in events[:2]:
        await publish(broker, event)
    await event_streams.publish("chat.message.r1", b"{not json", headers={"Nats-Msg-Id": "j-2"})
    await publish(broker, events[2])
    await broker.start()
    await asyncio.wait_for(received.wait(), DEADLINE_S)
    await wait_until(lambda: settled(event_streams, "CHAT", durable), what="the acks")

    # Gathered in one window; the garbage in the middle went to the dead letters alone.
    assert batches == [[event.event_id for event in events]]
    [letter] = await list_dead_letters(event_streams, consumer=durable)
    assert letter.data == b"{not json"
    assert letter.deliveries == 1


async def test_a_failed_batch_is_retried_whole(
    broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    durable = "batch-retry-test"
    policy = RetryPolicy(max_deliver=5, backoff_s=(0.2,), ack_wait_s=10.0)
    seen: list[list[str]] = []
    done = asyncio.Event()

    @durable_subscriber(
        broker, ChatMessage, durable=durable, policy=policy, batch_window_s=0.3, batch_size=16
    )
    async def handler(events: list[ChatMessage]) -> None:
        seen.append(sorted(event.event_id for event in events))
        if len(seen) == 1:
            raise ConnectionError("the database is briefly away")
        if sum(map(len, seen[1:])) == 2:
            done.set()

    events = [sample_event(ChatMessage, variant) for variant in range(2)]
    await broker.connect()
    for event in events:
        await publish(broker, event)
    await broker.start()
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    await wait_until(lambda: settled(event_streams, "CHAT", durable), what="the acks")

    ids = sorted(event.event_id for event in events)
    assert seen[0] == ids  # both were nakked, both came back
    assert sorted(event_id for retry in seen[1:] for event_id in retry) == ids
    assert await stream_count(event_streams, DEAD_LETTER_STREAM) == 0
