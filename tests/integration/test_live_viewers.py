"""Viewer counts travel as ``stats.viewers`` events from the gateway that saw them."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from events.broker import create_broker
from events.catalog import StatsViewers
from events.publisher import EventPublisher
from gateway.live.viewers import ViewerTracker, report_forever, viewer_key
from gateway.projections.stats import ViewerReporter

pytestmark = pytest.mark.integration

STEP_DEADLINE_S = 30.0


async def test_counts_are_published_for_the_stats_projection(
    event_streams: JetStreamContext, settings: Settings
) -> None:
    # Bounded here, not by pytest's 300 s: a hang names the await it hung in.
    async with asyncio.timeout(STEP_DEADLINE_S):
        broker = create_broker(settings, name="test-viewers")
        await broker.connect()
    reporter = ViewerReporter(EventPublisher(broker, producer="gateway"), gateway_id="gw-a")
    tracker = ViewerTracker()
    tracker.seen("s1", viewer_key("10.0.0.1", "a"))
    tracker.seen("s1", viewer_key("10.0.0.2", "b"))
    task = asyncio.create_task(report_forever(tracker, reporter.report_viewers, 0.05))
    try:
        async with asyncio.timeout(STEP_DEADLINE_S):
            subscription = await event_streams.subscribe("stats.viewers.s1", ordered_consumer=True)
        try:
            message = await subscription.next_msg(timeout=10)
            event = msgspec.json.decode(message.data, type=StatsViewers)
            assert (event.stream_id, event.gateway_id, event.viewers) == ("s1", "gw-a", 2)
        finally:
            async with asyncio.timeout(STEP_DEADLINE_S):
                await subscription.unsubscribe()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with asyncio.timeout(STEP_DEADLINE_S):
            await broker.stop()
