"""The projections' log reader: order, positions, and recovery of a lost consumer."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events.catalog import StatsViewers
from gateway.projections._reader import LogReader
from tests.integration.test_gateway_catalog import publish, wait_until

pytestmark = pytest.mark.integration

SUBJECT = "stats.viewers.>"


def _viewers(n: int) -> StatsViewers:
    return StatsViewers(stream_id="s", gateway_id="gw", viewers=n)


async def _read_until(reader: LogReader, last_seq: int) -> list[Msg]:
    got: list[Msg] = []

    async def done() -> bool:
        got.extend(await reader.next_batch())
        return reader.last_seq >= last_seq

    await wait_until(done, f"the reader at seq {last_seq}")
    return got


def _seqs(msgs: list[Msg]) -> list[int]:
    return [m.metadata.sequence.stream for m in msgs]


async def test_in_order_from_a_sequence_and_rewound(event_streams: JetStreamContext) -> None:
    last = (await publish(event_streams, [_viewers(n) for n in range(10)]))["STATS"]
    reader = LogReader(
        event_streams, "STATS", SUBJECT, start_seq=4, batch_size=3, idle_timeout_s=0.5
    )
    try:
        await reader.open()
        assert reader.pending == last - 3
        msgs = await _read_until(reader, last)
        assert _seqs(msgs) == list(range(4, last + 1))
        assert all(len(b) <= 3 for b in [msgs[i : i + 3] for i in range(0, len(msgs), 3)])
        assert reader.caught_up
        assert await reader.next_batch() == []  # idle: nothing after the idle timeout

        await reader.rewind(0)
        assert _seqs(await _read_until(reader, last)) == list(range(1, last + 1))
    finally:
        await reader.close()


async def test_started_by_time_it_survives_losing_its_consumer(
    event_streams: JetStreamContext,
) -> None:
    """nats-py recreates a lost ordered consumer "by sequence" but would keep the start
    time, which the server refuses; the reader clears it (see _reader.py)."""
    first = (await publish(event_streams, [_viewers(n) for n in range(3)]))["STATS"]
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    reader = LogReader(
        event_streams, "STATS", SUBJECT, start_time=since, idle_timeout_s=0.2, heartbeat_s=0.5
    )
    try:
        assert _seqs(await _read_until(reader, first)) == [1, 2, 3]
        assert reader._sub is not None
        info = await reader._sub.consumer_info()
        await event_streams.delete_consumer("STATS", info.name)  # as a server restart would

        last = (await publish(event_streams, [_viewers(n) for n in range(3, 6)]))["STATS"]
        # nats-py re-creates it after two missed heartbeats; its consumer sequence starts
        # at 1 again, so the reader re-reads from its own position to be sure.
        assert _seqs(await _read_until(reader, last)) == [4, 5, 6]
        assert reader.recoveries >= 1
    finally:
        await reader.close()


async def test_a_reader_slower_than_the_stream_skips_nothing(
    event_streams: JetStreamContext,
) -> None:
    """The server pushes faster than the caller takes: the reader pauses (drops its
    consumer when its queue is full) and resumes after the last message it returned."""
    last = (await publish(event_streams, [_viewers(n) for n in range(300)]))["STATS"]
    reader = LogReader(
        event_streams,
        "STATS",
        start_seq=1,
        batch_size=7,
        idle_timeout_s=0.1,
        buffer_msgs=16,
    )
    got: list[Msg] = []
    try:

        async def slowly() -> bool:
            got.extend(await reader.next_batch())
            await asyncio.sleep(0.002)  # the "database": slower than delivery
            return reader.last_seq >= last

        await wait_until(slowly, "the slow reader at the end of the stream")
    finally:
        await reader.close()
    assert _seqs(got) == list(range(1, last + 1))
    assert reader.pauses > 0  # the queue was small enough to overflow
