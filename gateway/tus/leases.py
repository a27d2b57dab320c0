"""One PATCH per upload at a time, across gateway processes: a lease on the upload's row.

tusd locks uploads in memory, which only works for one process (NOTES.md, "tus and
S3"); a second gateway behind the load balancer would write the same parts. Here the
lock is two columns of ``gateway_uploads`` taken by one conditional UPDATE, so the
database decides who wins, on SQLite and PostgreSQL alike:

    UPDATE gateway_uploads SET lock_token = :mine, lock_until = :now + lease
     WHERE id = :id AND state = 'open' AND expires_at > :now
       AND (lock_until IS NULL OR lock_until < :now)

The holder renews every third of the lease while its PATCH lives (:class:`LeaseKeeper`)
and clears it at the end. A gateway that dies mid-PATCH renews no more: its lock frees
itself when the lease runs out (tus clients retry 423). The expiry condition also
means no PATCH can start on an expired upload, which is what lets the uploader's
sweeper trust a free lock (uploader/sweeper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from sqlalchemy import CursorResult, Table, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import DatabaseUnavailable
from common.logs import get_logger
from gateway.tus.errors import StorageUnavailable
from gateway.tus.models import EngineState, Upload

__all__ = ["LeaseKeeper", "LeaseLost", "acquire", "release", "renew"]

log = get_logger(__name__)

_TABLE = cast(Table, Upload.__table__)


class LeaseLost(StorageUnavailable):
    """The lease could not be renewed in time: another PATCH may own the upload now."""


def _now() -> datetime:
    return datetime.now(UTC)


async def _rowcount(session: AsyncSession, stmt: Any) -> int:
    result = cast(CursorResult[Any], await session.execute(stmt))
    return result.rowcount


async def acquire(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, user_id: str, lease_s: float
) -> Upload | None:
    """The upload, locked by us (``lock_token`` is ours), or None when it is locked by
    another request, not this user's, terminated, complete or expired.

    One statement, one commit: the UPDATE returns the row (RETURNING, which SQLite has
    since 3.35 and PostgreSQL always had), so the happy path of a PATCH reads nothing
    else from the database before writing bytes.
    """
    token = secrets.token_hex(16)
    now = _now()
    stmt = (
        update(_TABLE)
        .where(
            _TABLE.c.id == upload_id,
            _TABLE.c.user_id == user_id,
            _TABLE.c.state == EngineState.OPEN.value,
            _TABLE.c.expires_at > now,
            or_(_TABLE.c.lock_until.is_(None), _TABLE.c.lock_until < now),
        )
        .values(lock_token=token, lock_until=now + timedelta(seconds=lease_s))
        .returning(*_TABLE.c)
    )
    async with sessions.begin() as session:
        row = (await session.execute(stmt)).mappings().one_or_none()
    return None if row is None else Upload(**row)


async def renew(
    sessions: async_sessionmaker[AsyncSession],
    upload_id: str,
    token: str,
    lease_s: float,
    **changes: object,
) -> bool:
    """Extend our lease, applying ``changes`` to the row in the same statement."""
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.id == upload_id, _TABLE.c.lock_token == token)
        .values(lock_until=_now() + timedelta(seconds=lease_s), **changes)
    )
    async with sessions.begin() as session:
        return await _rowcount(session, stmt) == 1


async def release(
    sessions: async_sessionmaker[AsyncSession],
    upload_id: str,
    token: str,
    **changes: object,
) -> bool:
    """Clear our lock, applying ``changes`` to the row in the same statement."""
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.id == upload_id, _TABLE.c.lock_token == token)
        .values(lock_token=None, lock_until=None, **changes)
    )
    async with sessions.begin() as session:
        return await _rowcount(session, stmt) == 1


class LeaseKeeper:
    """Renews a held lease in the background; :meth:`check` raises once it is lost.

    A renewal that fails for a moment (database hiccup) is retried on the next tick;
    the lease counts as lost only when its own end has passed without a renewal, the
    moment another gateway could legitimately take it.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        upload_id: str,
        token: str,
        lease_s: float,
    ) -> None:
        self._sessions = sessions
        self.upload_id = upload_id
        self.token = token
        self._lease_s = lease_s
        # The loop's clock, kept: check() also runs on a store's worker thread.
        self._clock = asyncio.get_running_loop().time
        self._valid_until = self._clock() + lease_s
        self._lost = False
        self._released = False
        self._task: asyncio.Task[None] | None = None
        # Row changes waiting for the next renewal or the release (see carry).
        self._carried: dict[str, object] = {}

    @property
    def lost(self) -> bool:
        return self._lost or self._clock() >= self._valid_until

    def carry(self, **changes: object) -> None:
        """Apply ``changes`` to the row with the next renewal or the release, whichever
        comes first: a lock handed from PATCH to PATCH (settling.py) is released only at
        the end, and the upload's sliding expiry must not wait that long."""
        self._carried.update(changes)

    async def release(self, **changes: object) -> None:
        """Free the lock now, with ``changes`` (and what was carried) in the same commit."""
        self.check()
        changes = {**self._carried, **changes}
        if not await release(self._sessions, self.upload_id, self.token, **changes):
            self._lost = True
            self.check()
        self._released = True

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(
                "the upload's lock could not be renewed; nothing more was written, retry"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._lost:
            await asyncio.sleep(self._lease_s / 3)
            started = loop.time()
            carried, self._carried = self._carried, {}
            try:
                renewed = await renew(
                    self._sessions, self.upload_id, self.token, self._lease_s, **carried
                )
            except (DatabaseUnavailable, OSError) as exc:
                self._carried = {**carried, **self._carried}  # with the next try
                log.warning("lease renewal failed", upload_id=self.upload_id, error=str(exc))
                continue
            if not renewed:
                self._lost = True
                log.warning("lease lost", upload_id=self.upload_id)
                return
            self._valid_until = started + self._lease_s

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=f"tus-lease-{self.upload_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._lost and not self._released:
            # Shielded: a cancelled request must still free its lock, or the next PATCH
            # waits out the lease for nothing.
            with contextlib.suppress(Exception):
                await asyncio.shield(release(self._sessions, self.upload_id, self.token))
