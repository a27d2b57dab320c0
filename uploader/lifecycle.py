"""The uploader's view of each upload, folded from the gateway's events.

``upload.created`` makes the row; ``chunk.uploaded`` moves its offset and expiry (the
expiry is the chunk's time + ``tus_expiry_s``, the same instant the gateway computes,
from the same timestamp), in batches (``record_progress``) and once more for the
completing chunk (``record_chunk``, before finalizing); ``upload.rejected`` with code
``cancelled`` (tus DELETE at the gateway) closes it. Every update only moves forward,
so redeliveries and the consumers' interleaving change nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import CursorResult, Table, case, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from events.catalog import ChunkUploaded, UploadCreated, UploadRejected
from events.chunks import newest_per_upload
from uploader.models import State, UploaderUpload

__all__ = [
    "CANCELLED_CODE",
    "UnknownUpload",
    "record_cancel",
    "record_chunk",
    "record_created",
    "record_progress",
]

_TABLE = cast(Table, UploaderUpload.__table__)
CANCELLED_CODE: Final = "cancelled"  # the gateway's code for a tus termination


class UnknownUpload(Exception):  # noqa: N818 - a verdict
    """A chunk of an upload whose ``upload.created`` has not been applied yet (retry)."""


async def record_created(sessions: async_sessionmaker[AsyncSession], event: UploadCreated) -> None:
    now = dt.datetime.now(dt.UTC)
    values = {
        "upload_id": event.upload_id,
        "user_id": event.user_id,
        "size": event.size,
        "offset": 0,
        "filename": event.filename,
        "title": event.title,
        "description": event.description,
        "state": State.OPEN.value,
        "expires_at": event.expires_at,
        "created_at": event.occurred_at,
        "updated_at": now,
    }
    async with sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt: Any = (
            insert(_TABLE).values(values).on_conflict_do_nothing(index_elements=["upload_id"])
        )
        await session.execute(stmt)


async def record_chunk(
    sessions: async_sessionmaker[AsyncSession], event: ChunkUploaded, expiry_s: float
) -> UploaderUpload:
    """Move offset and expiry forward; the row as it is afterwards."""
    async with sessions.begin() as session:
        await _move_forward(session, event, expiry_s)
        row = await session.get(UploaderUpload, event.upload_id, populate_existing=True)
    assert row is not None
    return row


async def record_progress(
    sessions: async_sessionmaker[AsyncSession],
    events: Sequence[ChunkUploaded],
    expiry_s: float,
) -> None:
    """:func:`record_chunk` for a batch, in one transaction: the newest chunk of each
    upload. One upload not created yet fails the whole batch (retried as one)."""
    async with sessions.begin() as session:
        for event in newest_per_upload(events):
            await _move_forward(session, event, expiry_s)


async def _move_forward(session: AsyncSession, event: ChunkUploaded, expiry_s: float) -> None:
    end = event.offset + event.length
    expires = event.occurred_at + dt.timedelta(seconds=expiry_s)
    column = _TABLE.c
    stmt = (
        update(_TABLE)
        .where(column.upload_id == event.upload_id)
        .values(
            offset=case((column.offset < end, end), else_=column.offset),
            expires_at=case(
                (column.expires_at.is_(None) | (column.expires_at < expires), expires),
                else_=column.expires_at,
            ),
            updated_at=dt.datetime.now(dt.UTC),
        )
    )
    result = cast(CursorResult[Any], await session.execute(stmt))
    if result.rowcount == 0:
        raise UnknownUpload(f"chunk of upload {event.upload_id} before its upload.created")


async def record_cancel(sessions: async_sessionmaker[AsyncSession], event: UploadRejected) -> None:
    if event.code != CANCELLED_CODE:
        return  # our own rejections come back on the stream: already recorded
    column = _TABLE.c
    async with sessions.begin() as session:
        await session.execute(
            update(_TABLE)
            .where(column.upload_id == event.upload_id, column.state == State.OPEN.value)
            .values(
                state=State.CANCELLED.value,
                reason_code=event.code,
                reason=event.reason,
                updated_at=dt.datetime.now(dt.UTC),
            )
        )
