"""Exactly-once side effects on at-least-once delivery: a tracking row per handled event.

A handler claims the event in the same transaction as its side effect::

    async with sessions.begin() as session:
        if not await claim_event(session, "chat", envelope.event_id):
            return  # a redelivery: the effect is already committed
        session.add(Debit(...))

Commit → the effect and the claim land together. Crash or rollback before commit →
neither does, and the redelivery does the work. Two replicas handed the same event at
once → the database's primary key lets exactly one claim win (the loser waits for the
winner's transaction, then sees the row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import CursorResult, Table, Text, delete, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime

__all__ = [
    "ProcessedEvent",
    "claim_event",
    "claim_events",
    "is_claimed",
    "prune_processed_events",
]


class ProcessedEvent(Base):
    """Shared table (no component prefix): each consumer only writes its own rows."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    processed_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), index=True, server_default=text("CURRENT_TIMESTAMP")
    )


_TABLE = cast(Table, ProcessedEvent.__table__)


async def claim_event(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` handles ``event_id`` in the caller's transaction.

    True: first time, go ahead with the side effect. False: already claimed (committed,
    or committed by a concurrent transaction we waited for) — skip the side effect.
    """
    if not consumer or not event_id:
        raise ValueError("consumer and event_id must be non-empty")
    values = {"consumer": consumer, "event_id": event_id, "processed_at": dt.datetime.now(dt.UTC)}
    dialect = session.get_bind().dialect.name
    # INSERT … ON CONFLICT DO NOTHING, not SELECT-then-INSERT: the check and the write
    # are one statement, so two concurrent claims cannot both see "absent". Not a
    # caught IntegrityError either: on PostgreSQL that aborts the caller's transaction.
    if dialect == "postgresql":
        stmt: Any = (
            pg_insert(_TABLE)
            .values(values)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        )
    elif dialect == "sqlite":
        stmt = (
            sqlite_insert(_TABLE)
            .values(values)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        )
    else:  # pragma: no cover - common.db.normalize_url admits only these two
        raise NotImplementedError(f"claim_event does not support {dialect!r}")
    result = cast(CursorResult[Any], await session.execute(stmt))
    return result.rowcount == 1


async def is_claimed(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Whether ``consumer`` has claimed ``event_id`` (committed): for a side effect that
    runs before its claim and should not run again once it is there."""
    found = await session.scalar(
        select(_TABLE.c.event_id).where(
            _TABLE.c.consumer == consumer, _TABLE.c.event_id == event_id
        )
    )
    return found is not None


async def claim_events(session: AsyncSession, consumer: str, event_ids: list[str]) -> set[str]:
    """:func:`claim_event` for several events in one statement: the ids claimed now.

    A group commit claims its whole batch with one round trip; an id missing from the
    result was claimed before (or twice in ``event_ids``: it is in the result once).
    """
    if not consumer or not all(event_ids):
        raise ValueError("consumer and event ids must be non-empty")
    if not event_ids:
        return set()
    now = dt.datetime.now(dt.UTC)
    rows = [
        {"consumer": consumer, "event_id": event_id, "processed_at": now}
        for event_id in dict.fromkeys(event_ids)
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # The rows as parameters, not in the statement: one cached statement whatever the
    # batch (SQLAlchemy sends them as one multi-row INSERT: "insertmanyvalues").
    stmt = (
        insert(_TABLE)
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
        .returning(_TABLE.c.event_id)
    )
    return set((await session.execute(stmt, rows)).scalars().all())


async def prune_processed_events(
    session: AsyncSession,
    older_than: dt.datetime,
    *,
    consumers: Collection[str] | None = None,
    limit: int | None = None,
) -> int:
    """Forget claims older than ``older_than`` (of ``consumers`` only, if given; at most
    ``limit`` of them, the oldest, if given); returns how many rows went.

    Only safe past the stream's retention (``events_max_age_days``) plus the longest
    redelivery delay: an event that can no longer be delivered needs no guard.
    """
    where = [_TABLE.c.processed_at < older_than]
    if consumers is not None:
        where.append(_TABLE.c.consumer.in_(list(consumers)))
    stmt = delete(_TABLE).where(*where)
    if limit is not None:
        # A bounded delete (by primary key, oldest first) keeps each transaction short:
        # on SQLite a long one would hold the only write lock.
        oldest = (
            select(_TABLE.c.consumer, _TABLE.c.event_id)
            .where(*where)
            .order_by(_TABLE.c.processed_at)
            .limit(limit)
        )
        stmt = delete(_TABLE).where(tuple_(_TABLE.c.consumer, _TABLE.c.event_id).in_(oldest))
    result = cast(CursorResult[Any], await session.execute(stmt))
    return result.rowcount
