"""Login rate limit, per account and per client address, shared by every gateway process.

PeerTube allows 15 login attempts per 5 minutes; so do we by default
(``login_limit_attempts`` / ``login_limit_window_s``). The gateway runs as several
processes that share no memory, so the counters live in the database: fixed windows,
one row per (bucket, window), bumped with a single atomic
``INSERT … ON CONFLICT DO UPDATE … RETURNING hits``, so concurrent attempts in any
process are all counted and none is lost.

Attempts are counted *before* the password is checked: Argon2 is the expensive part,
and a limited client must not be able to make us run it. A successful login clears
the account's bucket (a user who mistyped a few times is not penalised further), not
the address's.

Buckets are SHA-256 of "scope:subject": the table never holds a login name or an IP.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.auth.models import RateLimitWindow

_TABLE: Final = cast(Table, RateLimitWindow.__table__)
# Expired windows are deleted by roughly one call in PRUNE_ODDS: cheap, and the table
# stays at about one row per active bucket, without a background task.
PRUNE_ODDS: Final = 50


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


def bucket(scope: str, subject: str) -> str:
    return hashlib.sha256(f"{scope}:{subject}".encode()).hexdigest()


class RateLimiter:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, limit: int, window_s: int
    ) -> None:
        if limit < 1 or window_s < 1:
            raise ValueError("rate limit and window must be positive")
        self._sessions = sessions
        self._limit = limit
        self._window_s = window_s

    async def hit(self, *buckets: str) -> Verdict:
        """Count one attempt in every bucket; refused if any bucket is over its limit."""
        now = time.time()
        window_start = int(now // self._window_s * self._window_s)
        async with self._sessions.begin() as session:
            counts = [await self._bump(session, b, window_start) for b in buckets]
            if secrets.randbelow(PRUNE_ODDS) == 0:
                await session.execute(delete(_TABLE).where(_TABLE.c.window_start < window_start))
        if max(counts, default=0) > self._limit:
            return Verdict(False, retry_after_s=int(window_start + self._window_s - now) + 1)
        return Verdict(True)

    async def clear(self, bucket_key: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(_TABLE).where(_TABLE.c.bucket == bucket_key))

    async def _bump(self, session: AsyncSession, bucket_key: str, window_start: int) -> int:
        values = {"bucket": bucket_key, "window_start": window_start, "hits": 1}
        dialect = session.get_bind().dialect.name
        insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(_TABLE).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["bucket", "window_start"],
            set_={"hits": _TABLE.c.hits + 1},
        ).returning(_TABLE.c.hits)
        result = cast(CursorResult[Any], await session.execute(stmt))
        hits: int = result.scalar_one()
        return hits
