"""The catalog projection against real NATS JetStream, on SQLite and PostgreSQL.

Helpers and fixtures here are shared by the other ``test_gateway_catalog*`` and
``test_gateway_stats*`` modules.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import pytest
from nats.js import JetStreamContext
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import create_engine, downgrade, migrate, session_factory
from events.catalog import Event, TranscodeProgress, encode_event
from events.streams import stream_for_subject
from gateway.projections._checkpoints import read_checkpoints
from gateway.projections._reader import LogReader
from gateway.projections._store import TABLES
from gateway.projections.catalog import (
    FEEDS,
    PROJECTION,
    CatalogProjector,
    apply_batch,
    decode_batch,
    rebuild,
)
from tests.unit.test_projection_scenario import fold, scenario

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
POLL_S = 0.05

Dump = dict[str, list[dict[str, Any]]]


# --- helpers shared with the other catalog / stats test modules ---------------------


async def publish(
    js: JetStreamContext, events: Iterable[Event], *, msg_id_suffix: str = ""
) -> dict[str, int]:
    """Publish like EventPublisher does; returns the last sequence per stream."""
    last: dict[str, int] = {}
    pending = []
    for event in events:
        headers = {"Nats-Msg-Id": event.event_id + msg_id_suffix}
        pending.append(
            (
                stream_for_subject(event.subject()).name,
                js.publish(event.subject(), encode_event(event), headers=headers),
            )
        )
    for stream, coro in pending:
        ack = await coro
        assert not ack.duplicate
        last[stream] = max(last.get(stream, 0), ack.seq)
    return last


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = DEADLINE_S
) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after the deadline."""
    try:
        async with asyncio.timeout(deadline_s):
            while not await check():  # noqa: ASYNC110 - a condition in another process or database
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        pytest.fail(f"timed out after {deadline_s} s waiting for {what}")


async def wait_for_checkpoints(
    sessions: async_sessionmaker[AsyncSession], targets: dict[str, int]
) -> None:
    streams = sorted(targets)

    async def reached() -> bool:
        async with sessions() as session:
            seen = await read_checkpoints(session, PROJECTION, streams)
        return all(seen[s] >= targets[s] for s in streams)

    await wait_until(reached, f"catalog checkpoints {targets}")


async def dump(sessions: async_sessionmaker[AsyncSession]) -> Dump:
    """Every projection row, ordered by primary key (what "identical rows" compares)."""
    out: Dump = {}
    async with sessions() as session:
        for table in TABLES:
            pk = next(iter(table.primary_key.columns))
            rows = await session.execute(select(table).order_by(pk))
            out[table.name.removeprefix("gateway_catalog_")] = [dict(m) for m in rows.mappings()]
    return out


def rows_of(events: Sequence[Event]) -> Dump:
    """What the projection must hold after ``events``: the pure fold, as table rows."""
    return fold(events)


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)


@pytest.fixture
async def projector(
    event_streams: JetStreamContext, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[CatalogProjector]:
    running = CatalogProjector(event_streams, sessions, idle_timeout_s=1.0)
    await running.start()
    yield running
    await running.stop()


# --- the projection -------------------------------------------------------------------


async def test_the_projection_folds_the_log_into_the_expected_rows(
    event_streams: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    projector: CatalogProjector,
) -> None:
    events = scenario()
    targets = await publish(event_streams, events)
    assert set(targets) == {f.stream for f in FEEDS}
    await wait_for_checkpoints(sessions, targets)
    assert await dump(sessions) == rows_of(events)
    assert projector.applied == len(events)


async def test_a_restarted_projector_resumes_after_its_checkpoint(
    event_streams: JetStreamContext, sessions: async_sessionmaker[AsyncSession]
) -> None:
    events = scenario()
    first_half, second_half = events[: len(events) // 2], events[len(events) // 2 :]
    first = CatalogProjector(event_streams, sessions, idle_timeout_s=1.0)
    await first.start()
    try:
        await wait_for_checkpoints(sessions, await publish(event_streams, first_half))
    finally:
        await first.stop()

    targets = await publish(event_streams, second_half)  # while no projector runs
    second = CatalogProjector(event_streams, sessions, idle_timeout_s=1.0)
    await second.start()
    try:
        await wait_for_checkpoints(sessions, targets)
    finally:
        await second.stop()
    assert second.applied == len(second_half)  # nothing before the checkpoint again
    assert second.skipped == 0
    assert await dump(sessions) == rows_of(events)


async def test_redeliveries_and_late_copies_change_nothing(
    event_streams: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    projector: CatalogProjector,
) -> None:
    events = scenario()
    await wait_for_checkpoints(sessions, await publish(event_streams, events))
    before = await dump(sessions)

    # A redelivery: the same stored messages, applied again from the start.
    for feed in FEEDS:
        reader = LogReader(event_streams, feed.stream, start_seq=1)
        try:
            msgs = await reader.next_batch()
            outcome = await apply_batch(sessions, feed.stream, 0, decode_batch(msgs, feed.prefixes))
        finally:
            await reader.close()
        assert msgs
        assert outcome.applied == 0
        assert outcome.skipped == len(msgs)

    # A publisher retry inside the duplicate window: JetStream stores nothing new.
    ack = await event_streams.publish(
        events[0].subject(), encode_event(events[0]), headers={"Nats-Msg-Id": events[0].event_id}
    )
    assert ack.duplicate

    # Copies beyond the duplicate window (new message ids, new sequences).
    applied_before = projector.applied
    await wait_for_checkpoints(
        sessions, await publish(event_streams, events, msg_id_suffix=":late")
    )
    assert projector.applied == applied_before + len(events)  # folded again …
    assert await dump(sessions) == before  # … and changed nothing


async def test_two_projectors_at_once_apply_each_event_once(
    event_streams: JetStreamContext, database_url: str
) -> None:
    """Two gateway processes: separate engines (connection pools), one database."""
    engines = [create_engine(database_url), create_engine(database_url)]
    all_sessions = [session_factory(engine) for engine in engines]
    projectors = [
        CatalogProjector(event_streams, s, idle_timeout_s=1.0, batch_size=8) for s in all_sessions
    ]
    try:
        for running in projectors:
            await running.start()
        events = scenario()
        # Published in small bursts so both readers race over many batches.
        targets: dict[str, int] = {}
        for start in range(0, len(events), 7):
            targets.update(await publish(event_streams, events[start : start + 7]))
        await wait_for_checkpoints(all_sessions[0], targets)
        assert sum(p.applied for p in projectors) == len(events)  # each exactly once
        assert await dump(all_sessions[1]) == rows_of(events)
    finally:
        for running in projectors:
            await running.stop()
        for engine in engines:
            await engine.dispose()


async def test_an_undecodable_event_is_skipped_not_stuck(
    event_streams: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    projector: CatalogProjector,
) -> None:
    bad = await event_streams.publish(
        "transcode.progress.v-x", b'{"type": "transcode.progress", "video_id": 7}'
    )
    good = TranscodeProgress(video_id="v-x", percent=12, stage="encoding")
    targets = await publish(event_streams, [good])
    assert targets["MEDIA"] > bad.seq
    await wait_for_checkpoints(sessions, targets)
    assert (await dump(sessions))["videos"] == rows_of([good])["videos"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_stop_lets_the_batch_in_flight_finish(
    event_streams: JetStreamContext, db_engine: AsyncEngine
) -> None:
    """Stopping while a batch waits for the database: the batch commits, then the task
    ends, and nothing is left behind (a query cancelled mid-flight would leave a stuck
    aiosqlite close that hangs the event loop's shutdown)."""
    entered = asyncio.Event()

    class Watched(async_sessionmaker[AsyncSession]):
        def begin(self) -> Any:
            entered.set()
            return super().begin()

    sessions = Watched(db_engine)
    projector = CatalogProjector(event_streams, sessions, idle_timeout_s=0.5)
    await projector.start()
    try:
        async with db_engine.connect() as blocker:
            await blocker.exec_driver_sql("BEGIN IMMEDIATE")  # hold SQLite's write lock
            first = scenario()[:1]
            targets = await publish(event_streams, first)
            await asyncio.wait_for(entered.wait(), DEADLINE_S)  # a batch waits on the lock
            stopping = asyncio.create_task(projector.stop())
            await asyncio.sleep(0)
            assert not stopping.done()
            await blocker.rollback()
        await asyncio.wait_for(stopping, DEADLINE_S)
    finally:
        await projector.stop()
    async with sessions() as session:  # the batch committed before the task ended
        assert await read_checkpoints(session, PROJECTION, ["ACCOUNTS"]) == targets
    assert (await dump(sessions))["users"] == rows_of(first)["users"]
    leftovers = [t for t in asyncio.all_tasks() if "terminate" in repr(t.get_coro())]
    assert leftovers == []


# --- rebuild --------------------------------------------------------------------------


async def test_drop_the_tables_and_rebuild_by_replay_gives_identical_rows(
    event_streams: JetStreamContext, database_url: str
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        running = CatalogProjector(event_streams, sessions, idle_timeout_s=1.0)
        await running.start()
        events = scenario()
        try:
            await wait_for_checkpoints(sessions, await publish(event_streams, events))
        finally:
            await running.stop()
        before = await dump(sessions)
        assert before == rows_of(events)

        # The operator drops the projection (its migration down, then up again) …
        await downgrade(database_url, "gateway_catalog@-1")  # this branch only
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert not {t.name for t in TABLES} & tables
        await migrate(database_url)
        assert (await dump(sessions))["videos"] == []

        # … and rebuilds it by replay.
        report = await rebuild(event_streams, sessions)
        assert report.applied == len(events)
        assert await dump(sessions) == before

        # A second rebuild over existing rows: the same again.
        await rebuild(event_streams, sessions)
        assert await dump(sessions) == before
    finally:
        await engine.dispose()


async def test_rebuild_while_a_projector_runs(
    event_streams: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    projector: CatalogProjector,
) -> None:
    events = scenario()
    targets = await publish(event_streams, events)
    await wait_for_checkpoints(sessions, targets)
    await rebuild(event_streams, sessions, batch_size=16)
    # The running projector saw its checkpoint go back and rewound; nothing doubled.
    await wait_for_checkpoints(sessions, targets)
    assert await dump(sessions) == rows_of(events)
    async with sessions() as session:
        checkpoints = await read_checkpoints(session, PROJECTION, sorted(targets))
    assert checkpoints == targets


# --- schema ---------------------------------------------------------------------------


async def test_the_models_match_the_migration(db_engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from common.db import Base

    names = {t.name for t in TABLES}

    def include(obj: Any, name: str | None, kind: str, _reflected: bool, _other: Any) -> bool:
        table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in names

    def diff(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        assert (
            await conn.execute(text("SELECT count(*) FROM gateway_catalog_videos"))
        ).scalar() == 0


# --- speed ------------------------------------------------------------------------------


@pytest.mark.bench  # deselected by default (pyproject addopts); run with -m bench
async def test_rebuild_speed(
    event_streams: JetStreamContext, sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """20,000 events: registrations, uploads and their progress (4 streams)."""
    from events.catalog import MediaProbe, UploadCompleted, UserRegistered

    events: list[Event] = []
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for n in range(2_000):
        at = t0 + dt.timedelta(seconds=n)
        user_id, video_id = f"u-{n % 500}", f"v-{n}"
        events.append(
            UserRegistered(
                occurred_at=at, user_id=user_id, username=f"user{n % 500}", stream_id=f"s-{n % 500}"
            )
        )
        events.append(
            UploadCompleted(
                occurred_at=at,
                upload_id=f"up-{n}",
                user_id=user_id,
                video_id=video_id,
                object_key="k",
                size=1,
                sha256="0",
                probe=MediaProbe(container="mp4", duration_s=10.0),
                title=f"t{n}",
            )
        )
        events += [
            TranscodeProgress(
                occurred_at=at + dt.timedelta(milliseconds=p),
                video_id=video_id,
                percent=p * 12.5,
                stage="encoding",
            )
            for p in range(8)
        ]
    for start in range(0, len(events), 2_000):
        await publish(event_streams, events[start : start + 2_000])
    cpu_before = time.process_time()
    report = await rebuild(event_streams, sessions)
    cpu_s = time.process_time() - cpu_before
    backend = database_url.split(":", 1)[0]
    # CPU time of this process too: wall time on a shared 2-core box varies with load.
    print(
        f"\nrebuild {backend}: {report.events} events in {report.seconds:.2f} s"
        f" = {report.events_per_s:,.0f} events/s (this process: {cpu_s:.2f} CPU-s,"
        f" {report.events / cpu_s:,.0f} events per CPU-s; load {os.getloadavg()[0]:.1f})"
    )
    assert report.events == len(events)
