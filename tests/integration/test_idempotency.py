"""claim_event: one contract, run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from common.db import session_factory
from common.idempotency import (
    ProcessedEvent,
    claim_event,
    claim_events,
    prune_processed_events,
)

pytestmark = pytest.mark.integration

DEADLINE_S = 15.0


class HandlerCrashError(Exception):
    pass


@pytest.fixture
def sessions(db_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(db_engine)


async def _claim_and_commit(
    sessions: async_sessionmaker[AsyncSession], consumer: str, event_id: str
) -> bool:
    async with sessions.begin() as session:
        return await claim_event(session, consumer, event_id)


async def _handle(
    sessions: async_sessionmaker[AsyncSession], event_id: str, *, crash: bool = False
) -> None:
    """A handler with a side effect that must happen once: bump a counter row."""
    async with sessions.begin() as session:
        if not await claim_event(session, "counter", event_id):
            return
        await session.execute(
            text(
                "INSERT INTO projection_checkpoints (name, stream, last_seq, updated_at)"
                " VALUES ('counter', 'test', 1, CURRENT_TIMESTAMP)"
                " ON CONFLICT (name) DO UPDATE SET last_seq = projection_checkpoints.last_seq + 1"
            )
        )
        if crash:
            raise HandlerCrashError  # dies after the effect, before the commit


async def _counter(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT last_seq FROM projection_checkpoints WHERE name = 'counter'")
        )
        return int(value or 0)


async def test_first_claim_wins_and_repeats_are_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        assert await claim_event(session, "chat", "evt-1") is True
        assert await claim_event(session, "chat", "evt-1") is False  # same transaction
    assert await _claim_and_commit(sessions, "chat", "evt-1") is False  # a redelivery
    # Consumers are independent: each component handles every event once.
    assert await _claim_and_commit(sessions, "transcoder", "evt-1") is True
    assert await _claim_and_commit(sessions, "chat", "evt-2") is True


async def test_redelivery_does_not_repeat_the_side_effect(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for _ in range(3):
        await _handle(sessions, "evt-once")
    assert await _counter(sessions) == 1


async def test_a_rolled_back_claim_lets_the_redelivery_do_the_work(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(HandlerCrashError):
        await _handle(sessions, "evt-crash", crash=True)
    assert await _counter(sessions) == 0  # neither the effect nor the claim survived
    async with sessions() as session:
        assert await session.get(ProcessedEvent, ("counter", "evt-crash")) is None

    await _handle(sessions, "evt-crash")  # the redelivery
    await _handle(sessions, "evt-crash")  # and one more: still once
    assert await _counter(sessions) == 1


async def test_concurrent_claims_exactly_one_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # PostgreSQL runs the two transactions truly in parallel (the loser blocks on the
    # primary key until the winner commits); SQLite serializes them on its write lock.
    for round_ in range(10):
        results = await asyncio.wait_for(
            asyncio.gather(
                _claim_and_commit(sessions, "uploader", f"evt-{round_}"),
                _claim_and_commit(sessions, "uploader", f"evt-{round_}"),
            ),
            DEADLINE_S,
        )
        assert sorted(results) == [False, True], f"round {round_}: {results}"


async def test_concurrent_handlers_apply_the_effect_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await asyncio.wait_for(
        asyncio.gather(*(_handle(sessions, "evt-race") for _ in range(4))), DEADLINE_S
    )
    assert await _counter(sessions) == 1


async def _wait_for_lock_waiter(engine: AsyncEngine) -> None:
    """Poll, with a deadline, until some PostgreSQL backend waits on a lock."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            async with engine.connect() as conn:
                waiting = (
                    await conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
                ).scalar_one()
            if waiting:
                return
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("winner_commits", [True, False], ids=["commit", "rollback"])
async def test_the_loser_waits_for_the_winners_outcome(
    db_engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], winner_commits: bool
) -> None:
    """The second claim blocks until the first transaction ends, then follows it."""
    async with sessions() as first:
        await first.begin()
        assert await claim_event(first, "gateway", "evt-wait") is True

        second = asyncio.create_task(_claim_and_commit(sessions, "gateway", "evt-wait"))
        await _wait_for_lock_waiter(db_engine)
        assert not second.done()

        if winner_commits:
            await first.commit()
        else:
            await first.rollback()  # e.g. the first handler crashed mid-way
        second_won = await asyncio.wait_for(second, DEADLINE_S)
    assert second_won is (not winner_commits)


async def test_processed_at_is_aware_utc(sessions: async_sessionmaker[AsyncSession]) -> None:
    before = dt.datetime.now(dt.UTC)
    await _claim_and_commit(sessions, "chat", "evt-time")
    async with sessions() as session:
        row = await session.get_one(ProcessedEvent, ("chat", "evt-time"))
    assert row.processed_at.tzinfo is not None
    assert row.processed_at.utcoffset() == dt.timedelta(0)
    assert before - dt.timedelta(seconds=5) <= row.processed_at <= dt.datetime.now(dt.UTC)


async def test_prune_forgets_only_old_claims(sessions: async_sessionmaker[AsyncSession]) -> None:
    now = dt.datetime.now(dt.UTC)
    await _claim_and_commit(sessions, "chat", "old")
    await _claim_and_commit(sessions, "chat", "new")
    async with sessions.begin() as session:
        await session.execute(
            update(ProcessedEvent)
            .where(ProcessedEvent.event_id == "old")
            .values(processed_at=now - dt.timedelta(days=40))
        )
    async with sessions.begin() as session:
        assert await prune_processed_events(session, now - dt.timedelta(days=31)) == 1
    async with sessions() as session:
        left = (await session.scalars(select(ProcessedEvent.event_id))).all()
    assert left == ["new"]


async def test_bad_arguments_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="non-empty"):
            await claim_event(session, "", "evt")
        with pytest.raises(ValueError, match="non-empty"):
            await claim_event(session, "chat", "")


async def test_claim_events_claims_a_batch_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The batch form: what is new is claimed (a repeat within the call once), what was
    claimed before is not, and a rolled-back batch claimed nothing."""
    await _claim_and_commit(sessions, "batch", "e-old")
    async with sessions.begin() as session:
        claimed = await claim_events(session, "batch", ["e-1", "e-old", "e-2", "e-1"])
    assert claimed == {"e-1", "e-2"}
    async with sessions() as session:
        assert await claim_events(session, "batch", ["e-3", "e-2"]) == {"e-3"}
        await session.rollback()
    async with sessions.begin() as session:
        assert await claim_events(session, "batch", ["e-3", "e-1"]) == {"e-3"}
        assert await claim_events(session, "batch", []) == set()
    async with sessions() as session:
        with pytest.raises(ValueError, match="non-empty"):
            await claim_events(session, "batch", ["e-4", ""])


async def test_chat_housekeeping_prunes_its_old_claims_in_batches_and_nothing_else(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import housekeeping

    monkeypatch.setattr(housekeeping, "PRUNE_BATCH", 3)  # several batches, one short
    now = dt.datetime.now(dt.UTC)
    async with sessions.begin() as session:
        claimed = await claim_events(session, "chat", [f"old-{n}" for n in range(7)])
        assert len(claimed) == 7
        await claim_event(session, "chat", "recent")
        await claim_event(session, "uploader", "old-of-another-consumer")
    async with sessions.begin() as session:
        await session.execute(
            update(ProcessedEvent)
            .where(ProcessedEvent.event_id.like("old%"))
            .values(processed_at=now - dt.timedelta(days=40))
        )
    pruned = await housekeeping.prune_claims(
        sessions, now, dt.timedelta(days=31), consumers=("chat", "chat-users")
    )
    assert pruned == 7
    async with sessions() as session:
        left = sorted((await session.scalars(select(ProcessedEvent.event_id))).all())
    assert left == ["old-of-another-consumer", "recent"]
