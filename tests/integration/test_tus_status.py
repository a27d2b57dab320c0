"""The upload status projection folds events in any order, any number of times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

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
        UploadCompleted(upload_id=UPLOAD, user_id="u1", video_id="v1", object_key="k",
                        size=10, sha256="s", probe=PROBE, occurred_at=T0 + timedelta(seconds=3)),
    ]  # fmt: skip


async def fold(engine: AsyncEngine, events: list[Event]) -> tuple[object, ...]:
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        await session.execute(delete(UploadStatus))
    for event in events:
        async with sessions.begin() as session:
            await apply_status_event(session, event)
    async with sessions() as session:
        row = await session.get(UploadStatus, UPLOAD)
    assert row is not None
    return (
        row.user_id, row.state, row.size, row.offset, row.filename, row.title,
        row.video_id, row.reason_code, row.reason, row.expires_at,
    )  # fmt: skip


async def test_any_order_and_repeats_give_the_same_row(db_engine: AsyncEngine) -> None:
    events = happy_path()
    # Only upload.created sets the expiry.
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


async def test_a_cancelled_or_rejected_upload_shows_the_offset_it_ended_at(
    db_engine: AsyncEngine,
) -> None:
    created = happy_path()[0]
    cancelled = UploadRejected(
        upload_id=UPLOAD, user_id="u1", code="cancelled", reason="x", offset=4
    )
    assert (await fold(db_engine, [created, cancelled]))[1:4] == ("cancelled", 10, 4)
    rejected = UploadRejected(
        upload_id=UPLOAD, user_id="u1", code="not_media", reason="Nope.", offset=10
    )
    assert (await fold(db_engine, [rejected, created]))[1:4] == ("rejected", 10, 10)


async def test_chunk_events_of_older_versions_change_nothing(db_engine: AsyncEngine) -> None:
    # The UPLOADS stream still holds chunk.uploaded: a rebuild replays them too.
    created = happy_path()[0]
    chunk = ChunkUploaded(upload_id=UPLOAD, offset=0, length=4, part_number=1,
                          occurred_at=T0 + timedelta(seconds=1))  # fmt: skip
    assert await fold(db_engine, [created, chunk]) == await fold(db_engine, [created])
