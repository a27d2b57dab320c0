"""Ingest's own tables: the channel-key hashes it learned, and who publishes each channel.

:class:`KeyStore` is fed by ``channel.key_rotated`` (ingest/bus.py) and read on every
publish. One row per channel: the newest rotation replaces the old hash, ordered by
``(occurred_at, event_id)`` so a redelivered or reordered older event never wins —
which also makes the write idempotent without a tracking row.

:class:`PublisherLeases` keeps "one publisher per channel" true across ingest
processes: a publish claims the channel's row unless a live lease holds it; the
holder renews it with every stats tick and deletes it when the publish ends. A
process that dies leaves a lease that lapses after ``ttl_s``.

Both run the same statements on SQLite and PostgreSQL (INSERT … ON CONFLICT DO UPDATE
… WHERE), as :mod:`common.idempotency` does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, Text, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime
from events.catalog import ChannelKeyRotated
from events.errors import PermanentError
from ingest.auth import hashes_match

__all__ = ["Channel", "IngestChannelKey", "IngestPublisher", "KeyStore", "PublisherLeases"]

SUPPORTED_ALGORITHMS: Final = frozenset({"sha256"})
_HEX: Final = frozenset("0123456789abcdef")


class IngestChannelKey(Base):
    __tablename__ = "ingest_channel_keys"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    key_hash: Mapped[str] = mapped_column(Text, index=True)
    hash_algorithm: Mapped[str] = mapped_column(Text)
    rotated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    event_id: Mapped[str] = mapped_column(Text)


class IngestPublisher(Base):
    __tablename__ = "ingest_publishers"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    session_id: Mapped[str] = mapped_column(Text)
    instance: Mapped[str] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


_KEYS = cast(Table, IngestChannelKey.__table__)
_PUBLISHERS = cast(Table, IngestPublisher.__table__)


@dataclass(frozen=True, slots=True)
class Channel:
    stream_id: str
    user_id: str


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return pg_insert(table)
    if dialect == "sqlite":
        return sqlite_insert(table)
    raise NotImplementedError(f"ingest tables do not support {dialect!r}")  # pragma: no cover


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def apply_rotation(self, event: ChannelKeyRotated) -> bool:
        """Store ``event``'s hash unless a newer rotation is stored; True if it was."""
        algorithm = event.hash_algorithm.lower()
        if algorithm not in SUPPORTED_ALGORITHMS:
            raise PermanentError(f"channel.key_rotated: unsupported hash_algorithm {algorithm!r}")
        key_hash = event.key_hash.lower()
        if len(key_hash) != 64 or not set(key_hash) <= _HEX:
            raise PermanentError("channel.key_rotated: key_hash is not a SHA-256 hex digest")
        values = {
            "stream_id": event.stream_id,
            "user_id": event.user_id,
            "key_hash": key_hash,
            "hash_algorithm": algorithm,
            "rotated_at": event.occurred_at.astimezone(dt.UTC),
            "event_id": event.event_id,
        }
        async with self._sessions.begin() as session:
            stmt = _insert(session, _KEYS).values(values)
            newer = (_KEYS.c.rotated_at < stmt.excluded.rotated_at) | (
                (_KEYS.c.rotated_at == stmt.excluded.rotated_at)
                & (_KEYS.c.event_id < stmt.excluded.event_id)
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["stream_id"],
                set_={name: stmt.excluded[name] for name in values if name != "stream_id"},
                where=newer,
            )
            result = cast(CursorResult[Any], await session.execute(stmt))
            return result.rowcount == 1

    async def lookup(self, presented_hash: str) -> Channel | None:
        """The channel whose stored hash equals ``presented_hash`` (compared in constant time)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(_KEYS.c.stream_id, _KEYS.c.user_id, _KEYS.c.key_hash).where(
                    _KEYS.c.key_hash == presented_hash
                )
            )
            for stream_id, user_id, key_hash in rows:
                if hashes_match(presented_hash, key_hash):
                    return Channel(stream_id, user_id)
        return None

    async def count(self) -> int:
        async with self._sessions() as session:
            return len((await session.execute(select(_KEYS.c.stream_id))).all())


class PublisherLeases:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, instance: str) -> None:
        self._sessions = sessions
        self.instance = instance

    async def claim(self, stream_id: str, session_id: str, ttl_s: float) -> bool:
        """Take the channel unless a lease that has not lapsed holds it."""
        now = _now()
        values = {
            "stream_id": stream_id,
            "session_id": session_id,
            "instance": self.instance,
            "started_at": now,
            "expires_at": now + dt.timedelta(seconds=ttl_s),
        }
        async with self._sessions.begin() as session:
            stmt = _insert(session, _PUBLISHERS).values(values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["stream_id"],
                set_={name: stmt.excluded[name] for name in values if name != "stream_id"},
                where=_PUBLISHERS.c.expires_at < now,
            )
            result = cast(CursorResult[Any], await session.execute(stmt))
            return result.rowcount == 1

    async def renew(self, session_ids: Sequence[str], ttl_s: float) -> None:
        if not session_ids:
            return
        async with self._sessions.begin() as session:
            await session.execute(
                update(_PUBLISHERS)
                .where(_PUBLISHERS.c.session_id.in_(list(session_ids)))
                .values(expires_at=_now() + dt.timedelta(seconds=ttl_s))
            )

    async def release(self, stream_id: str, session_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(_PUBLISHERS).where(
                    (_PUBLISHERS.c.stream_id == stream_id)
                    & (_PUBLISHERS.c.session_id == session_id)
                )
            )
