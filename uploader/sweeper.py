"""The expiry sweep: unfinished uploads past their expiry lose their bytes.

Every ``upload_sweep_interval_s`` the sweeper takes the open uploads whose expiry
(last durable chunk + ``tus_expiry_s``, from events) passed more than ``grace_s`` ago
and, for each:

- skips it while a PATCH holds its lock. The lock is the gateway's lease column
  (``gateway_uploads.lock_until``), which the sweeper only *reads* — the one read of
  another component's table, kept to this query (:data:`_GATEWAY_LOCKS`). Reading is
  enough: the gateway takes a lock only on an unexpired upload (gateway/tus/leases.py),
  so once the sweeper sees an expired upload unlocked no PATCH can start on it; the
  grace covers clock skew between the two hosts;
- finalizes it instead if every byte turns out to be stored (a completion event that
  was lost): the user's upload is not thrown away;
- otherwise aborts its multipart upload, deletes its tail, and publishes
  ``upload.expired`` (deterministic id), then records the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Final

from sqlalchemy import Column, MetaData, Table, Text, select, update

from common.db import DatabaseUnavailable, UtcDateTime
from common.logs import get_logger
from common.store import ObjectStore, StoreError
from events.catalog import UploadExpired
from events.publisher import PublishError
from uploader import ids
from uploader.finalize import ClaimBusy, finalize
from uploader.layout import source_key, upload_prefix
from uploader.models import State, UploaderUpload
from uploader.services import Services

__all__ = ["Sweeper"]

log = get_logger(__name__)

BATCH: Final = 100
# A read-only view of the gateway's lease columns, in a MetaData of its own so the
# uploader never creates, migrates or writes this table.
_GATEWAY_LOCKS: Final = Table(
    "gateway_uploads",
    MetaData(),
    Column("id", Text, primary_key=True),
    Column("lock_until", UtcDateTime()),
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Sweeper:
    def __init__(self, services: Services, *, interval_s: float, grace_s: float) -> None:
        self._services = services
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="uploader-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                swept = await self.sweep_once()
                if swept:
                    log.info("expired uploads swept", count=swept)
            except (DatabaseUnavailable, StoreError, PublishError, OSError) as exc:
                log.warning("sweep failed; will retry", error=str(exc))
            await asyncio.sleep(self._interval_s)

    async def sweep_once(self) -> int:
        """One pass; returns how many uploads expired."""
        cutoff = _now() - dt.timedelta(seconds=self._grace_s)
        async with self._services.sessions() as session:
            rows = (
                await session.scalars(
                    select(UploaderUpload)
                    .where(
                        UploaderUpload.state == State.OPEN.value,
                        UploaderUpload.expires_at < cutoff,
                    )
                    .order_by(UploaderUpload.expires_at)
                    .limit(BATCH)
                )
            ).all()
        swept = 0
        for row in rows:
            if await self._locked(row.upload_id):
                log.info("sweep: upload locked by a PATCH, skipped", upload_id=row.upload_id)
                continue
            if await self._complete_after_all(row):
                continue
            await self._expire(row)
            swept += 1
        return swept

    async def _locked(self, upload_id: str) -> bool:
        async with self._services.sessions() as session:
            lock_until = await session.scalar(
                select(_GATEWAY_LOCKS.c.lock_until).where(_GATEWAY_LOCKS.c.id == upload_id)
            )
        return lock_until is not None and lock_until > _now()

    async def _durable_size(self, store: ObjectStore, upload_id: str) -> int:
        total = 0
        for upload in await store.list_multipart(source_key(upload_id)):
            total = max(total, sum(part.size for part in await store.list_parts(upload)))
        return total

    async def _complete_after_all(self, row: UploaderUpload) -> bool:
        """All bytes stored, completion never announced: finalize rather than expire."""
        if row.size <= 0:
            return False
        if await self._durable_size(self._services.store, row.upload_id) != row.size:
            return False
        log.warning("sweep: a complete upload was never finalized", upload_id=row.upload_id)
        with contextlib.suppress(ClaimBusy):
            await finalize(self._services, None, row.upload_id, row.size)
        return True

    async def _expire(self, row: UploaderUpload) -> None:
        store = self._services.store
        for upload in await store.list_multipart(source_key(row.upload_id)):
            await store.abort_multipart(upload)
        await store.delete_prefix(upload_prefix(row.upload_id))
        await self._services.publisher.publish(
            UploadExpired(
                event_id=ids.event_id(row.upload_id, "upload.expired"),
                upload_id=row.upload_id,
                user_id=row.user_id,
                offset=row.offset,
                size=row.size,
            ),
            correlation_id=row.upload_id,
        )
        async with self._services.sessions.begin() as session:
            await session.execute(
                update(UploaderUpload)
                .where(
                    UploaderUpload.upload_id == row.upload_id,
                    UploaderUpload.state == State.OPEN.value,
                )
                .values(
                    state=State.EXPIRED.value,
                    reason_code="expired",
                    reason="the upload was not finished in time",
                    updated_at=_now(),
                )
            )
        log.info("upload expired", upload_id=row.upload_id, offset=row.offset, size=row.size)
