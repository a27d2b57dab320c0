"""Periodic clean-up a chat worker does: forget decisions no redelivery can need.

A decided ``chat.message`` keeps its outcome (``chat_outcomes``) so a redelivery can
re-send it. Redeliveries come within minutes (the consumer's ack wait and backoff); a
day is a wide margin. A dead letter redriven later than that finds its claim and no
outcome, and sends nothing again: its outcome went out the first time.

The claims themselves (``processed_events``, one per chat message: the busiest
consumer there is) must outlive every way an event can come back, replays of the
stream included, so they go only once the stream itself has dropped the event
(``events_max_age_days``) plus a day; in bounded batches, so that a first clean-up of
millions of rows never holds SQLite's write lock for long.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection
from typing import Final

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.models import OutcomeRow
from common.idempotency import prune_processed_events
from common.logs import get_logger
from common.tasks import cancel_and_wait

log = get_logger(__name__)

KEEP_OUTCOMES: Final = dt.timedelta(days=1)
EVERY_S: Final = 300.0
PRUNE_BATCH: Final = 5000


async def prune_outcomes(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> int:
    async with sessions.begin() as session:
        result = await session.execute(
            delete(OutcomeRow).where(OutcomeRow.created_at < now - KEEP_OUTCOMES)
        )
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_claims(
    sessions: async_sessionmaker[AsyncSession],
    now: dt.datetime,
    keep: dt.timedelta,
    consumers: Collection[str],
) -> int:
    pruned = 0
    while True:
        async with sessions.begin() as session:
            batch = await prune_processed_events(
                session, now - keep, consumers=consumers, limit=PRUNE_BATCH
            )
        pruned += batch
        if batch < PRUNE_BATCH:
            return pruned
        await asyncio.sleep(0)  # let decisions in between batches


class Housekeeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        keep_claims: dt.timedelta,
        consumers: Collection[str],
    ) -> None:
        self._sessions = sessions
        self._keep_claims = keep_claims
        self._consumers = consumers
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(EVERY_S)
            try:
                now = dt.datetime.now(dt.UTC)
                pruned = await prune_outcomes(self._sessions, now)
                claims = await prune_claims(self._sessions, now, self._keep_claims, self._consumers)
                if pruned or claims:
                    log.info("pruned chat outcomes and claims", outcomes=pruned, claims=claims)
            except Exception:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancellation SQLAlchemy reported as a database error.
                    raise asyncio.CancelledError from None
                log.exception("chat housekeeping failed")
