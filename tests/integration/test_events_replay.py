"""Replay from a sequence or a time yields exactly the stored events, in order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from events.catalog import ChatAccepted, ChatMessage, encode_event
from events.replay import (
    ReplayError,
    StoredReader,
    StoredRecord,
    iter_stored,
    republish,
)
from tests.unit.test_events_catalog import sample_event

pytestmark = pytest.mark.integration

EVENTS = 500
SUBJECT = "chat.message.*"


@dataclass(frozen=True)
class Published:
    seq: int
    event_id: str
    time: datetime


async def _publish_history(js: JetStreamContext) -> list[Published]:
    """500 chat.message events on two rooms, with chat.accepted noise between them.

    Sequential publishes, each awaited: the stored times strictly increase.
    """
    for index in range(EVENTS):
        event = sample_event(ChatMessage, variant=index, stream_id=f"room{index % 2}")
        await js.publish(
            event.subject(), encode_event(event), headers={"Nats-Msg-Id": event.event_id}
        )
        if index % 5 == 0:  # another type in the same stream, which the filter excludes
            noise = sample_event(ChatAccepted, variant=index)
            await js.publish(
                noise.subject(), encode_event(noise), headers={"Nats-Msg-Id": noise.event_id}
            )
    return [
        Published(record.seq, record.headers["Nats-Msg-Id"], record.time)
        async for record in _reader(js, SUBJECT, from_seq=1)
    ]


async def _reader(js: JetStreamContext, subject: str, from_seq: int) -> AsyncIterator[StoredRecord]:
    async with StoredReader(js, subject, from_seq=from_seq) as reader:
        async for record in reader:
            yield record


@pytest.fixture
async def history(event_streams: JetStreamContext) -> list[Published]:
    published = await _publish_history(event_streams)
    assert len(published) == EVENTS
    return published


async def _replayed(
    js: JetStreamContext,
    *,
    from_seq: int | None = None,
    since: datetime | None = None,
    to_seq: int | None = None,
) -> list[tuple[int, str]]:
    """(seq, event id) of what ``iter_stored`` yields, unpacked as the gateway does."""
    out: list[tuple[int, str]] = []
    stored = iter_stored(js, SUBJECT, from_seq=from_seq, since=since, to_seq=to_seq)
    async with contextlib.aclosing(stored):
        async for seq, subject, headers, data in stored:
            assert subject.startswith("chat.message.")
            assert headers["Nats-Msg-Id"].encode() in data  # the id is the event's own
            out.append((seq, headers["Nats-Msg-Id"]))
    return out


async def test_replay_from_sequence_yields_the_stored_events_in_order(
    event_streams: JetStreamContext, history: list[Published]
) -> None:
    start = history[EVENTS // 2]
    replayed = await _replayed(event_streams, from_seq=start.seq)
    assert replayed == [(p.seq, p.event_id) for p in history[EVENTS // 2 :]]

    # An inclusive upper bound.
    end = history[400]
    bounded = await _replayed(event_streams, from_seq=start.seq, to_seq=end.seq)
    assert bounded == [(p.seq, p.event_id) for p in history[EVENTS // 2 : 401]]

    # Past the end: nothing, at once.
    last_seq = (await event_streams.stream_info("CHAT")).state.last_seq
    assert await _replayed(event_streams, from_seq=last_seq + 1) == []

    # Stopping early and closing the iterator deletes its consumer too.
    stored = iter_stored(event_streams, SUBJECT, from_seq=1)
    async with contextlib.aclosing(stored):
        async for _ in stored:
            break
    # Every read deleted its throw-away consumer.
    assert await event_streams.consumers_info("CHAT") == []


async def test_replay_from_time_yields_the_stored_events_in_order(
    event_streams: JetStreamContext, history: list[Published]
) -> None:
    # Halfway between two stored times: no rounding can move the start.
    before, first = history[299], history[300]
    since = before.time + (first.time - before.time) / 2
    replayed = await _replayed(event_streams, since=since)
    assert replayed == [(p.seq, p.event_id) for p in history[300:]]


async def test_replay_stops_at_the_snapshot_taken_before_it_started(
    event_streams: JetStreamContext, history: list[Published]
) -> None:
    seen: list[int] = []
    async with StoredReader(event_streams, SUBJECT, from_seq=1, batch=50) as reader:
        async for record in reader:
            seen.append(record.seq)
            if len(seen) == 1:  # events published during the replay are not part of it
                late = sample_event(ChatMessage, variant=9999, stream_id="room0")
                await event_streams.publish(late.subject(), encode_event(late))
    assert seen == [p.seq for p in history]


async def test_replay_ends_even_if_its_last_message_is_deleted_meanwhile(
    event_streams: JetStreamContext, history: list[Published]
) -> None:
    seen: list[int] = []
    async with StoredReader(event_streams, SUBJECT, from_seq=history[-10].seq) as reader:
        assert reader.last_seq == history[-1].seq  # the snapshot: the last match
        await event_streams.delete_msg("CHAT", reader.last_seq)
        async for record in reader:
            seen.append(record.seq)
    assert seen == [p.seq for p in history[-10:-1]]


async def test_replay_of_a_subject_in_no_stream_is_refused(event_streams: JetStreamContext) -> None:
    with pytest.raises(ReplayError, match="no stream stores"):
        await _replayed_subject(event_streams, "nowhere.>")
    with pytest.raises(ReplayError, match="spans streams"):
        await _replayed_subject(event_streams, ">")


async def _replayed_subject(js: JetStreamContext, subject: str) -> None:
    async with StoredReader(js, subject, from_seq=1):
        pass


@pytest.fixture
async def replay_target(event_streams: JetStreamContext) -> AsyncIterator[str]:
    """A stream for replayed copies (``replayed.>``), as an operator would create one."""
    await event_streams.add_stream(StreamConfig(name="REPLAYED_TEST", subjects=["replayed.>"]))
    yield "REPLAYED_TEST"
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await event_streams.delete_stream("REPLAYED_TEST")


async def test_replay_to_subject_republishes_each_event_once(
    event_streams: JetStreamContext, history: list[Published], replay_target: str
) -> None:
    start = history[EVENTS // 2]
    expected = history[EVENTS // 2 :]

    async def copy(replay_id: str) -> tuple[int, int]:
        async with StoredReader(event_streams, SUBJECT, from_seq=start.seq) as reader:
            stats = await republish(
                event_streams, reader, to_subject="replayed.{subject}", replay_id=replay_id
            )
        return stats.published, stats.duplicates

    assert await copy("run1") == (len(expected), 0)
    copies = [record async for record in _reader(event_streams, "replayed.>", from_seq=1)]
    assert [c.headers["VP-Replay-Of"] for c in copies] == [f"CHAT:{p.seq}" for p in expected]
    assert [c.headers["Nats-Msg-Id"] for c in copies] == [
        f"{p.event_id}:replay:run1" for p in expected
    ]
    originals = {
        record.seq: record async for record in _reader(event_streams, SUBJECT, from_seq=start.seq)
    }
    for copied, published in zip(copies, expected, strict=True):
        original = originals[published.seq]
        assert copied.subject == f"replayed.{original.subject}"
        assert copied.data == original.data

    # The same replay id again (a resumed run): JetStream drops every copy.
    assert await copy("run1") == (0, len(expected))
    assert (await event_streams.stream_info(replay_target)).state.messages == len(expected)
