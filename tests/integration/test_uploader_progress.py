"""The uploader records chunk progress in batches: one row update per upload, all or
nothing (uploader.lifecycle.record_progress)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import session_factory
from events.catalog import ChunkUploaded, UploadCreated
from uploader.lifecycle import UnknownUpload, record_created, record_progress
from uploader.models import UploaderUpload

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 21, 12, 0, tzinfo=UTC)
A, B, UNKNOWN = "a" * 32, "b" * 32, "c" * 32
EXPIRY_S = 2 * 86400.0


def chunk(upload_id: str, offset: int, length: int, second: int) -> ChunkUploaded:
    return ChunkUploaded(
        upload_id=upload_id,
        offset=offset,
        length=length,
        part_number=offset // 10 + 1,
        occurred_at=T0 + timedelta(seconds=second),
    )


async def test_a_batch_moves_each_upload_once_and_all_or_nothing(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    for upload_id in (A, B):
        created = UploadCreated(
            upload_id=upload_id, user_id="u1", size=30, expires_at=T0 + timedelta(days=1)
        )
        await record_created(sessions, created)

    # Out of order and repeated: the furthest chunk and the latest time win.
    batch = [chunk(A, 10, 10, 2), chunk(A, 0, 10, 9), chunk(B, 0, 5, 3), chunk(A, 10, 10, 2)]
    await record_progress(sessions, batch, EXPIRY_S)

    async def row(upload_id: str) -> tuple[int, datetime | None]:
        async with sessions() as session:
            found = await session.get(UploaderUpload, upload_id)
        assert found is not None
        return found.offset, found.expires_at

    assert await row(A) == (20, T0 + timedelta(seconds=9 + EXPIRY_S))
    assert await row(B) == (5, T0 + timedelta(seconds=3 + EXPIRY_S))

    # A chunk that overtook its upload.created fails the batch, and nothing of it stays.
    with pytest.raises(UnknownUpload):
        await record_progress(sessions, [chunk(A, 20, 10, 20), chunk(UNKNOWN, 0, 1, 20)], EXPIRY_S)
    assert (await row(A))[0] == 20
    await record_progress(sessions, [], EXPIRY_S)  # an empty batch is a no-op
