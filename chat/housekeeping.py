"""Periodic clean-up a chat worker does: forget decisions no redelivery can need.

A decided ``chat.message`` keeps its outcome (``chat_outcomes``) so a redelivery can
re-send it. Redeliveries come within minutes (the consumer's ack wait and backoff); a
day is a wide margin. A dead letter redriven later than that finds its claim and no
outcome, and sends nothing again: its outcome went out the first time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Final

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.models import OutcomeRow
from common.logs import get_logger
from common.tasks import cancel_and_wait

log = get_logger(__name__)

KEEP_OUTCOMES: Final = dt.timedelta(days=1)
EVERY_S: Final = 300.0


async def prune_outcomes(sessions: async_sessionmaker[AsyncSession], now: dt.datetime) -> int:
    async with sessions.begin() as session:
        result = await session.execute(
            delete(OutcomeRow).where(OutcomeRow.created_at < now - KEEP_OUTCOMES)
        )
    return int(getattr(result, "rowcount", 0) or 0)


class Housekeeper:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
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
                pruned = await prune_outcomes(self._sessions, dt.datetime.now(dt.UTC))
                if pruned:
                    log.info("pruned chat outcomes", rows=pruned)
            except Exception:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancellation SQLAlchemy reported as a database error.
                    raise asyncio.CancelledError from None
                log.exception("chat housekeeping failed")
