"""``projection_checkpoints`` rows: a projection's position in each stream it reads.

The table belongs to the foundation migration and has no ORM model there; this Core
``Table`` sits on its own ``MetaData`` so it can never clash with a model another
component may add to ``Base.metadata`` later.

The rows double as the projection's lock. A batch is applied inside one transaction
that first locks *all* of the projection's checkpoint rows (``SELECT … FOR UPDATE`` on
PostgreSQL; on SQLite the ``INSERT`` that creates missing rows already takes the
database's single write lock). Locking all of them, not only the batch's stream,
serializes the projection's writers across streams too: two batches from different
streams may touch the same row (a channel is written by ``ACCOUNTS`` and ``STREAMS``
events), and a read-modify-write of that row must not interleave with another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.db import UtcDateTime

__all__ = [
    "CHECKPOINTS",
    "checkpoint_name",
    "lock_checkpoints",
    "read_checkpoints",
    "reset_checkpoints",
    "set_checkpoint",
]

CHECKPOINTS = Table(
    "projection_checkpoints",
    MetaData(),
    Column("name", Text, primary_key=True),
    Column("stream", Text, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)


def checkpoint_name(projection: str, stream: str) -> str:
    return f"{projection}:{stream}"


def _insert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return pg_insert(CHECKPOINTS)
    if dialect == "sqlite":
        return sqlite_insert(CHECKPOINTS)
    raise NotImplementedError(f"checkpoints on {dialect!r}")  # pragma: no cover


async def _ensure_rows(session: AsyncSession, projection: str, streams: Iterable[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {"name": checkpoint_name(projection, s), "stream": s, "last_seq": 0, "updated_at": now}
        for s in sorted(streams)
    ]
    await session.execute(_insert(session).on_conflict_do_nothing(index_elements=["name"]), rows)


async def lock_checkpoints(
    session: AsyncSession, projection: str, streams: Sequence[str]
) -> dict[str, int]:
    """Create missing rows, lock them all (see the module docstring), return stream → seq."""
    await _ensure_rows(session, projection, streams)
    names = [checkpoint_name(projection, s) for s in streams]
    rows = await session.execute(
        select(CHECKPOINTS.c.stream, CHECKPOINTS.c.last_seq)
        .where(CHECKPOINTS.c.name.in_(names))
        .order_by(CHECKPOINTS.c.name)  # one lock order for every writer: no deadlock
        .with_for_update()
    )
    return {stream: int(seq) for stream, seq in rows.all()}


async def read_checkpoints(
    session: AsyncSession, projection: str, streams: Sequence[str]
) -> dict[str, int]:
    """Positions without locking (0 for a stream never applied)."""
    names = [checkpoint_name(projection, s) for s in streams]
    rows = await session.execute(
        select(CHECKPOINTS.c.stream, CHECKPOINTS.c.last_seq).where(CHECKPOINTS.c.name.in_(names))
    )
    found = {stream: int(seq) for stream, seq in rows.all()}
    return {s: found.get(s, 0) for s in streams}


async def set_checkpoint(session: AsyncSession, projection: str, stream: str, seq: int) -> None:
    await session.execute(
        update(CHECKPOINTS)
        .where(CHECKPOINTS.c.name == checkpoint_name(projection, stream))
        .values(last_seq=seq, updated_at=dt.datetime.now(dt.UTC))
    )


async def reset_checkpoints(session: AsyncSession, projection: str, streams: Sequence[str]) -> None:
    """Back to 0 (rows kept, so they stay lockable)."""
    await _ensure_rows(session, projection, streams)
    for stream in streams:
        await set_checkpoint(session, projection, stream, 0)
