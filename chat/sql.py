"""Portable "insert if absent" and "insert or update" for the two backends (PostgreSQL, SQLite)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase


def _dialect(executor: AsyncSession | AsyncConnection) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.get_bind().dialect.name


async def insert_ignore(
    session: AsyncSession | AsyncConnection,
    model: type[DeclarativeBase],
    values: Mapping[str, Any],
    keys: Sequence[str],
) -> bool:
    """``INSERT … ON CONFLICT (keys) DO NOTHING``; True when the row was inserted.

    One statement, so two concurrent inserts cannot both see "absent" (the loser
    waits for the winner's transaction, then does nothing).
    """
    table = cast(Table, model.__table__)
    insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    stmt = insert(table).values(dict(values)).on_conflict_do_nothing(index_elements=list(keys))
    result = cast(CursorResult[Any], await session.execute(stmt))
    return result.rowcount == 1


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    columns: Sequence[str],
) -> None:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET`` each of ``columns`` to the new row's."""
    insert = pg_insert if _dialect(conn) == "postgresql" else sqlite_insert
    stmt = insert(table)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in columns}
        ),
        list(rows),
    )
