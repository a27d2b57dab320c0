"""The transcoder's job table on SQLite and PostgreSQL: migration, claims, leases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import Base, create_engine, downgrade, migrate, session_factory
from transcoder import jobs
from transcoder.jobs import ClaimOutcome, JobStatus

pytestmark = pytest.mark.integration

LEASE_S = 30.0


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)


async def claim(
    sessions: async_sessionmaker[AsyncSession],
    owner: str,
    *,
    event: str = "evt-1",
    redelivery: bool = False,
    lease_s: float = LEASE_S,
) -> jobs.Claim:
    return await jobs.claim_job(
        sessions,
        video_id="v1",
        request_event_id=event,
        owner=owner,
        lease_s=lease_s,
        redelivery=redelivery,
    )


async def test_model_matches_the_migration(db_engine: AsyncEngine) -> None:
    def diff(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda _o, name, kind, _r, _x: (
                    kind != "table" or name == "transcoder_jobs"
                ),
            },
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_the_branch_downgrades_and_upgrades(database_url: str) -> None:
    await downgrade(database_url, "transcoder@0001_foundation")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "transcoder_jobs" not in tables
        await migrate(database_url)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert "transcoder_jobs" in tables
    finally:
        await engine.dispose()


async def test_lifecycle_run_encode_publish(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = await claim(sessions, "a")
    assert (first.outcome, first.attempts) == (ClaimOutcome.RUN, 1)
    # A copy of the request while "a" holds a live lease: acked without work.
    assert (await claim(sessions, "b")).outcome is ClaimOutcome.BUSY
    assert await jobs.renew_lease(sessions, video_id="v1", owner="a", lease_s=LEASE_S)

    row = await jobs.store_result(sessions, video_id="v1", result_json='{"x": 1}')
    assert row.status == JobStatus.ENCODED
    assert row.completed_event_id
    assert row.published_event_id
    ids = (row.completed_event_id, row.published_event_id)
    # A concurrent duplicate run's result does not replace the first one or its ids.
    again = await jobs.store_result(sessions, video_id="v1", result_json='{"x": 2}')
    assert (again.result, again.completed_event_id, again.published_event_id) == ('{"x": 1}', *ids)

    assert (await claim(sessions, "c")).outcome is ClaimOutcome.PUBLISH
    async with sessions() as session, session.begin():
        assert await jobs.mark_published(session, "v1") is True
    async with sessions() as session, session.begin():
        assert await jobs.mark_published(session, "v1") is False
    assert (await claim(sessions, "d", event="evt-2")).outcome is ClaimOutcome.DONE


async def test_a_redelivery_takes_over_a_silent_holder(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert (await claim(sessions, "a")).outcome is ClaimOutcome.RUN
    # JetStream redelivers only when "a" stopped answering: take the job over.
    takeover = await claim(sessions, "b", redelivery=True)
    assert (takeover.outcome, takeover.attempts) == (ClaimOutcome.RUN, 2)
    assert not await jobs.renew_lease(sessions, video_id="v1", owner="a", lease_s=LEASE_S)


async def test_an_expired_lease_is_free(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert (await claim(sessions, "a", lease_s=-1.0)).outcome is ClaimOutcome.RUN
    assert (await claim(sessions, "b")).outcome is ClaimOutcome.RUN


async def test_failures_release_the_lease_and_allow_a_retry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await claim(sessions, "a")
    await jobs.record_failure(sessions, video_id="v1", owner="a", reason="boom", permanent=False)
    row = await jobs.load(sessions, "v1")
    assert row is not None
    assert (row.status, row.lease_until, row.error) == ("running", None, "boom")
    assert (await claim(sessions, "b")).outcome is ClaimOutcome.RUN

    await jobs.record_failure(sessions, video_id="v1", owner="b", reason="bad", permanent=True)
    row = await jobs.load(sessions, "v1")
    assert row is not None
    assert row.status == "failed"
    # A redriven request runs again (after a fix, say).
    retried = await claim(sessions, "c")
    assert (retried.outcome, retried.attempts) == (ClaimOutcome.RUN, 3)


async def test_concurrent_first_claims_run_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(claim(sessions, f"w{n}", event=f"evt-{n}") for n in range(4))), 15
    )
    assert sorted(c.outcome.value for c in outcomes) == ["busy", "busy", "busy", "run"]
