"""Every catalog event through a real JetStream: publish → durable consumer → equal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from faststream.nats import NatsBroker, NatsMessage
from nats.js import JetStreamContext

from common.settings import Settings
from events.broker import create_broker
from events.catalog import EVENT_TYPES, StreamStarted
from events.consumer import durable_subscriber
from events.envelope import Event
from events.publisher import EventPublisher
from events.streams import stream_for_subject
from tests.unit.test_events_catalog import sample_event

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="roundtrip-test")
    yield broker
    await broker.stop()


def _collector(
    cls: type[Event], received: dict[type[Event], tuple[Event, str]], done: asyncio.Event
) -> Callable[..., Awaitable[None]]:
    async def handler(event: Event, msg: NatsMessage) -> None:
        received[type(event)] = (event, msg.raw_message.subject)
        if len(received) == len(EVENT_TYPES):
            done.set()

    # The handler's type is what FastStream decodes into: set it per event class
    # (string annotations from `from __future__` would not name the loop variable).
    handler.__annotations__ = {"event": cls, "msg": NatsMessage, "return": None}
    return handler


async def test_every_event_type_round_trips(broker: NatsBroker) -> None:
    received: dict[type[Event], tuple[Event, str]] = {}
    done = asyncio.Event()
    for cls in EVENT_TYPES:
        subscribe = durable_subscriber(
            broker, cls, durable=f"roundtrip-{cls.event_type().replace('.', '-')}"
        )
        subscribe(_collector(cls, received, done))
    await broker.start()

    publisher = EventPublisher(broker, producer="roundtrip-test")
    sent = {cls: sample_event(cls, variant=index) for index, cls in enumerate(EVENT_TYPES)}
    for event in sent.values():
        ack = await publisher.publish(event)
        assert not ack.duplicate
        assert ack.stream == stream_for_subject(event.subject()).name

    await asyncio.wait_for(done.wait(), DEADLINE_S)
    for cls, event in sent.items():
        got, subject = received[cls]
        assert got == event, cls.event_type()
        assert subject == event.subject()


async def test_the_same_event_published_twice_is_stored_once(
    broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    await broker.start()
    publisher = EventPublisher(broker, producer="dedup-test")
    event = sample_event(StreamStarted)

    first = await publisher.publish(event)
    second = await publisher.publish(event)

    assert not first.duplicate
    assert second.duplicate is True
    assert second.seq == first.seq
    info = await event_streams.stream_info("STREAMS")
    assert info.state.messages == 1
