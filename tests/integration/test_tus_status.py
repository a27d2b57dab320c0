"""The upload status projection folds events in any order, any number of times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import session_factory
from events.catalog import (
    ChunkUploaded,
    MediaProbe,
    UploadCompleted,
    UploadCreated,
    UploadExpired,
    UploadRejected,
)
from events.chunks import newest_per_upload
from events.envelope import Event
from gateway.tus.models import UploadStatus
from gateway.tus.status import apply_status_event

pytestmark = pytest.mark.integration

UPLOAD = "0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 5, 21, 12, 0, tzinfo=UTC)
PROBE = MediaProbe(container="mp4", duration_s=1.0, width=64, height=48)


def happy_path() -> list[Event]:
    return [
        UploadCreated(
            upload_id=UPLOAD, user_id="u1", size=10, filename="a.mp4", title="A",
            expires_at=T0 + timedelta(days=1), occurred_at=T0,
        ),
        ChunkUploaded(upload_id=UPLOAD, offset=0, length=4, part_number=1,
                      occurred_at=T0 + timedelta(seconds=1)),
        ChunkUploaded(upload_id=UPLOAD, offset=4, length=6, part_number=2, complete=True,
                      occurred_at=T0 + timedelta(seconds=2)),
        UploadCompleted(upload_id=UPLOAD, user_id="u1", video_id="v1", object_key="k",
                        size=10, sha256="s", probe=PROBE, occurred_at=T0 + timedelta(seconds=3)),
    ]  # fmt: skip


async def fold(engine: AsyncEngine, events: list[Event]) -> tuple[object, ...]:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        await session.execute(delete(UploadStatus))
    for event in events:
        async with sessions.begin() as session:
            await apply_status_event(session, event, expiry_s=3600)
    async with sessions() as session:
        row = await session.get(UploadStatus, UPLOAD)
    assert row is not None
    return (
        row.user_id, row.state, row.size, row.offset, row.filename, row.title,
        row.video_id, row.reason_code, row.reason, row.expires_at,
    )  # fmt: skip


async def test_any_order_and_repeats_give_the_same_row(db_engine: AsyncEngine) -> None:
    events = happy_path()
    # The expiry only moves later: the creation's day, not a chunk's hour after it.
    expires = T0 + timedelta(days=1)
    expected = ("u1", "ready", 10, 10, "a.mp4", "A", "v1", "", "", expires)
    for order in itertools.permutations(events):
        assert await fold(db_engine, [*order, *order]) == expected


async def test_the_first_final_state_wins(db_engine: AsyncEngine) -> None:
    created = happy_path()[0]
    rejected = UploadRejected(upload_id=UPLOAD, user_id="u1", code="not_media", reason="Nope.")
    expired = UploadExpired(upload_id=UPLOAD, user_id="u1", offset=3, size=10)
    row = await fold(db_engine, [created, rejected, expired])
    assert row[1:4] == ("rejected", 10, 3)
    assert row[7:9] == ("not_media", "Nope.")
    cancelled = UploadRejected(upload_id=UPLOAD, user_id="u1", code="cancelled", reason="x")
    assert (await fold(db_engine, [cancelled, created]))[1] == "cancelled"


async def test_a_batch_of_chunks_folds_like_each_of_them(db_engine: AsyncEngine) -> None:
    created, first, last, _ = happy_path()
    assert isinstance(first, ChunkUploaded)
    assert isinstance(last, ChunkUploaded)
    other = ChunkUploaded(upload_id="f" * 32, offset=0, length=3, part_number=1,
                          occurred_at=T0 + timedelta(seconds=5))  # fmt: skip
    # The later date of the first chunk must carry over to the furthest one.
    late_first = msgspec.structs.replace(first, occurred_at=T0 + timedelta(hours=2))
    for batch in itertools.permutations([late_first, last, other, last]):
        newest = newest_per_upload(batch)
        assert [chunk.upload_id for chunk in newest] == sorted({UPLOAD, "f" * 32})
        assert await fold(db_engine, [created, *newest]) == await fold(db_engine, [created, *batch])
    [only] = newest_per_upload([late_first, last])
    assert (only.offset, only.complete) == (4, True)
    assert only.occurred_at == T0 + timedelta(hours=2)
