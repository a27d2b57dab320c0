"""Live stats from real NATS: separate aggregators (processes) agree, a fresh one
catches up, stale counts expire; and the two HTTP routes."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.nats_server import NatsServerProcess
from common.settings import Settings
from events.catalog import ChatAccepted, ChatUser, Event, StatsIngest, StatsViewers
from gateway.projections import queries, stats_start_time
from gateway.projections.catalog import CatalogProjector
from gateway.projections.reducer import ChannelRow
from gateway.projections.stats import LiveStats, StatsAggregator, StatsFeed, live_stats
from tests.integration.test_gateway_catalog import (
    publish,
    wait_for_checkpoints,
    wait_until,
)
from tests.integration.test_gateway_catalog_api import assert_problem, started_catalog
from tests.unit.test_projection_scenario import scenario

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "s-alice", "s-bob", "s-carol"


def _chat(stream_id: str, n: int) -> Event:
    return ChatAccepted(
        message_id=f"m-{stream_id}-{n}",
        stream_id=stream_id,
        user=ChatUser(id="u-bob", name="bob"),
        text=f"hello {n}",
        ts=0,
    )


def stats_history() -> list[Event]:
    """Two gateways' counts for alice (totals 3, 7, 14, 12), ingest samples, chat."""
    return [
        StatsViewers(stream_id=ALICE, gateway_id="gw-1", viewers=3),
        StatsViewers(stream_id=ALICE, gateway_id="gw-2", viewers=4),
        StatsViewers(stream_id=ALICE, gateway_id="gw-1", viewers=10),
        StatsViewers(stream_id=ALICE, gateway_id="gw-2", viewers=2),
        StatsViewers(stream_id=BOB, gateway_id="gw-1", viewers=1),
        StatsIngest(stream_id=ALICE, session_id="sess-a2", bitrate_kbps=2500.0, fps=30.0),
        StatsIngest(stream_id=ALICE, session_id="sess-a2", bitrate_kbps=2400.0, fps=29.97),
        StatsIngest(stream_id=BOB, session_id="an-old-session", bitrate_kbps=900.0, fps=25.0),
        *(_chat(ALICE, n) for n in range(12)),
        _chat(CAROL, 0),
    ]


@pytest.fixture
async def connections(nats_server: NatsServerProcess) -> AsyncIterator[list[Client]]:
    """One NATS connection per simulated gateway process."""
    clients = [await nats.connect(nats_server.url) for _ in range(3)]
    yield clients
    for client in clients:
        await client.close()


async def _channels(sessions: async_sessionmaker[AsyncSession]) -> dict[str, ChannelRow]:
    async with sessions() as session:
        rows = {sid: await queries.channel(session, sid) for sid in (ALICE, BOB, CAROL)}
    return {sid: row for sid, row in rows.items() if row is not None}


def _snapshot(
    agg: StatsAggregator, channels: dict[str, ChannelRow], now: dt.datetime
) -> dict[str, LiveStats]:
    return {sid: live_stats(agg, channel, now) for sid, channel in channels.items()}


async def _feed(js: JetStreamContext, since: dt.datetime) -> StatsFeed:
    feed = StatsFeed(js, StatsAggregator(), idle_timeout_s=1.0)
    await feed.start(since)
    return feed


async def _caught_up(feeds: list[StatsFeed], targets: dict[str, int]) -> None:
    async def done() -> bool:
        return all(f.positions.get(s, 0) >= seq for f in feeds for s, seq in targets.items())

    await wait_until(done, f"stats feeds at {targets}")


async def test_separate_aggregators_agree_and_a_fresh_one_catches_up(
    event_streams: JetStreamContext,
    database_url: str,
    connections: list[Client],
) -> None:
    from common.db import create_engine, session_factory

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    projector = CatalogProjector(event_streams, sessions, idle_timeout_s=1.0)
    feeds: list[StatsFeed] = []
    try:
        await projector.start()
        await wait_for_checkpoints(sessions, await publish(event_streams, scenario()))
        channels = await _channels(sessions)
        since = await stats_start_time(sessions)
        assert since == channels[ALICE].started_at  # the oldest live session: alice's

        feeds = [await _feed(c.jetstream(), since) for c in connections[:2]]
        targets = await publish(event_streams, stats_history())
        await _caught_up(feeds, targets)
        # A gateway process started after all of it reads the same history back.
        feeds.append(await _feed(connections[2].jetstream(), since))
        await _caught_up(feeds[2:], targets)

        now = dt.datetime.now(dt.UTC)
        first, second, fresh = (_snapshot(f.aggregator, channels, now) for f in feeds)
        assert first == second == fresh
        alice = first[ALICE]
        assert (alice.live, alice.viewers, alice.peak_viewers) == (True, 12, 14)
        assert (alice.bitrate_kbps, alice.fps, alice.chat_per_minute) == (2400.0, 29.97, 12)
        assert alice.started_at is not None
        assert alice.uptime_s == pytest.approx((now - alice.started_at).total_seconds())
        bob = first[BOB]
        assert (bob.viewers, bob.peak_viewers) == (1, 1)
        assert (bob.bitrate_kbps, bob.fps) == (0.0, 0.0)  # a sample of another session
        carol = first[CAROL]
        assert (carol.live, carol.viewers, carol.uptime_s, carol.chat_per_minute) == (
            False, 0, 0.0, 1,
        )  # fmt: skip

        # 20 s on, every gateway's count is stale; the peak of the session stays.
        later = _snapshot(feeds[0].aggregator, channels, now + dt.timedelta(seconds=20))
        assert (later[ALICE].viewers, later[ALICE].peak_viewers) == (0, 14)
        assert later[ALICE].bitrate_kbps == 0.0
        assert later[ALICE].chat_per_minute == 12
        much_later = _snapshot(feeds[1].aggregator, channels, now + dt.timedelta(seconds=61))
        assert much_later[ALICE].chat_per_minute == 0
    finally:
        for feed in feeds:
            await feed.stop()
        await projector.stop()
        await engine.dispose()


async def test_the_stats_routes(
    settings: Settings,
    database_url: str,
    event_streams: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with started_catalog(settings, database_url, event_streams, monkeypatch) as catalog:
        alice, carol = catalog.users["alice"], catalog.users["carol"]
        projections = catalog.projections
        await projections.report_viewers(alice.stream_id, 5)
        for event in (
            StatsViewers(stream_id=alice.stream_id, gateway_id="gw-other", viewers=2),
            StatsIngest(
                stream_id=alice.stream_id,
                session_id="sess-a2",
                bitrate_kbps=3000,
                fps=60,
                keyframe_interval_s=2.0,
            ),
            *(_chat(alice.stream_id, n) for n in range(3)),
        ):
            await projections.publisher.publish(event)

        url = f"/api/v2/streams/{alice.stream_id}/stats"

        async def settled() -> bool:
            body = (await catalog.client.get(url)).json()
            return bool(body["viewers"] == 7 and body["chat_per_minute"] == 3 and body["fps"])

        await wait_until(settled, "alice's stats over HTTP")
        public = (await catalog.client.get(url)).json()
        assert public["stream_id"] == alice.stream_id
        assert public["live"] is True
        assert (public["peak_viewers"], public["bitrate_kbps"], public["fps"]) == (7, 3000.0, 60.0)
        assert public["keyframe_interval_s"] == 2.0
        assert public["uptime_s"] > 0

        mine = await catalog.client.get("/api/v2/stats/live", headers=alice.headers)
        assert mine.status_code == 200
        assert mine.json()["stream_id"] == alice.stream_id
        assert mine.json()["viewers"] == 7
        offline = (await catalog.client.get("/api/v2/stats/live", headers=carol.headers)).json()
        assert (offline["live"], offline["viewers"], offline["uptime_s"]) == (False, 0, 0.0)

        assert_problem(await catalog.client.get("/api/v2/stats/live"), 401)
        assert_problem(await catalog.client.get("/api/v2/streams/nobody/stats"), 404)
