"""Load and write back the catalog rows a batch touches (batched, both backends)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.projections.models import CatalogChannel, CatalogUser, CatalogVideo
from gateway.projections.reducer import CatalogState, ChannelRow, Keys, UserRow, VideoRow

__all__ = ["TABLES", "clear_tables", "load_state", "store_state"]

USERS: Table = CatalogUser.__table__  # type: ignore[assignment]
CHANNELS: Table = CatalogChannel.__table__  # type: ignore[assignment]
VIDEOS: Table = CatalogVideo.__table__  # type: ignore[assignment]
TABLES: tuple[Table, ...] = (USERS, CHANNELS, VIDEOS)

# Bound parameters per IN list: far below SQLite's 32766 and asyncpg's 32767.
_IN_CHUNK = 1000

RowT = TypeVar("RowT", bound=msgspec.Struct)


async def _load(
    session: AsyncSession, table: Table, pk: str, keys: Iterable[str], row_type: type[RowT]
) -> dict[str, RowT]:
    wanted = sorted(keys)
    out: dict[str, RowT] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        result = await session.execute(select(table).where(table.c[pk].in_(chunk)))
        for mapping in result.mappings():
            out[mapping[pk]] = row_type(**mapping)
    return out


async def load_state(session: AsyncSession, keys: Keys) -> CatalogState:
    state = CatalogState()
    state.users = await _load(session, USERS, "user_id", keys.user_ids, UserRow)
    state.videos = await _load(session, VIDEOS, "video_id", keys.video_ids, VideoRow)
    # A deleted recording may be its channel's thumbnail: load those channels too.
    stream_ids = keys.stream_ids | {v.stream_id for v in state.videos.values() if v.stream_id}
    state.channels = await _load(session, CHANNELS, "stream_id", stream_ids, ChannelRow)
    return state


def _upsert(session: AsyncSession, table: Table, pk: str) -> Any:
    dialect = session.get_bind().dialect.name
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table)
    columns = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != pk}
    return stmt.on_conflict_do_update(index_elements=[pk], set_=columns)


async def _write(
    session: AsyncSession, table: Table, pk: str, rows: Sequence[msgspec.Struct]
) -> None:
    if rows:
        # One executemany: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues").
        await session.execute(
            _upsert(session, table, pk), [msgspec.structs.asdict(r) for r in rows]
        )


async def store_state(session: AsyncSession, state: CatalogState) -> None:
    users, channels, videos = state.dirty_rows()
    await _write(session, USERS, "user_id", users)
    await _write(session, CHANNELS, "stream_id", channels)
    await _write(session, VIDEOS, "video_id", videos)


async def clear_tables(session: AsyncSession) -> None:
    for table in TABLES:
        await session.execute(delete(table))
