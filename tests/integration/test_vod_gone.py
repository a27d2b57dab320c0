"""The deleted-video check of delivery (gateway/vod/gone.py) on a real catalog table.

Deleted answers stay, live answers are rechecked after ``recheck_s``, concurrent misses
share one query, a database that does not answer fails open, and the recording id it
derives is ingest's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import create_engine, session_factory
from gateway.projections._store import VIDEOS
from gateway.vod.gone import DeletedVideos

pytestmark = pytest.mark.integration
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


async def _rows(engine: AsyncEngine, **statuses: str) -> None:
    async with engine.begin() as conn:
        for video_id, status in statuses.items():
            await conn.execute(
                VIDEOS.insert().values(video_id=video_id, status=status, sort_at=NOW)
            )


@BOTH_DATABASES
async def test_answers_are_kept_as_long_as_they_hold(db_engine: AsyncEngine) -> None:
    await _rows(db_engine, **{"v-del": "deleted", "v-ok": "ready"})
    gone = DeletedVideos(session_factory(db_engine), recheck_s=3600.0)
    assert await gone.is_deleted("v-del")
    assert await gone.is_deleted("v-del")
    assert not await gone.is_deleted("v-ok")
    assert not await gone.is_deleted("v-ok")
    assert not await gone.is_deleted("v-unknown")  # not in the catalog yet: served
    assert gone.queries == 3  # one per video, not one per request
    # Concurrent misses for one video: one query between them.
    answers = await asyncio.gather(*(gone.is_deleted("v-new") for _ in range(20)))
    assert answers == [False] * 20
    assert gone.queries == 4


@BOTH_DATABASES
async def test_a_live_answer_is_rechecked(db_engine: AsyncEngine) -> None:
    await _rows(db_engine, **{"v-soon": "ready"})
    gone = DeletedVideos(session_factory(db_engine), recheck_s=0.0)
    assert not await gone.is_deleted("v-soon")
    async with db_engine.begin() as conn:
        await conn.execute(
            VIDEOS.update().where(VIDEOS.c.video_id == "v-soon").values(status="deleted")
        )
    assert await gone.is_deleted("v-soon")
    assert await gone.is_deleted("v-soon")
    assert gone.queries == 2  # deleted is terminal: never asked again


async def test_a_database_that_does_not_answer_fails_open(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/catalog.db")
    try:
        gone = DeletedVideos(session_factory(engine))
        assert not await gone.is_deleted("v-any")
    finally:
        await engine.dispose()
