"""The transcoder's own table: one row per video, the job's lifecycle and lease.

    (none) ──claim──▶ running ──store_result──▶ encoded ──publish──▶ published
                        │  ▲                                   (one video.published)
                        ▼  │ claim (a retry)
                      failed

- **running** carries a lease (owner, lease_until) renewed with the JetStream
  heartbeat. A *first* delivery that finds a live lease held by someone else is a
  duplicate copy of the request (or a second request for the same video): the holder's
  own message is still unacknowledged and guarantees the job, so the copy is acked and
  skipped — no second transcode. A *redelivery* finds it because its previous holder
  stopped heartbeating (killed, stuck): it takes the job over.
- **encoded** stores the result and the event ids of ``transcode.completed`` and
  ``video.published`` *before* they are published: every publish attempt (after a crash,
  from any replica) sends the same ids, so JetStream's duplicate window and every
  consumer's ``processed_events`` see one event.
- **published** is set in the transaction that publishes; a later request for the same
  video is acked without work.
- **deleted** (from any state, or before any request: :func:`mark_deleted`) is terminal:
  nothing is published for the video any more, and a delivery that finds it removes
  what it made or was given instead (:mod:`transcoder.deletion`).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Integer, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime
from events.envelope import new_event_id

__all__ = ["Claim", "ClaimOutcome", "JobStatus", "TranscodeJob", "claim_job"]


class JobStatus(enum.StrEnum):
    RUNNING = "running"
    ENCODED = "encoded"
    PUBLISHED = "published"
    FAILED = "failed"
    DELETED = "deleted"


class TranscodeJob(Base):
    __tablename__ = "transcoder_jobs"

    video_id: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    request_event_id: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text, server_default="")
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # The child's Result (JSON), once encoded.
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    completed_event_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    published_event_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str] = mapped_column(Text, server_default="")
    # What the request asked to transcode: a delete finds the source here even when its
    # event does not say (transcoder/deletion.py).
    source_key: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


_TABLE = cast(Table, TranscodeJob.__table__)


class ClaimOutcome(enum.Enum):
    RUN = "run"  # transcode now (lease taken)
    PUBLISH = "publish"  # already encoded: publish the stored result
    DONE = "done"  # already published: nothing to do
    BUSY = "busy"  # another worker holds a live lease: ack this copy, skip
    DELETED = "deleted"  # the video was deleted: remove its media, publish nothing


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    attempts: int
    owner: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_row(
    video_id: str, status: JobStatus, event_id: str, now: dt.datetime, source_key: str = ""
) -> dict[str, object]:
    """A job row as first written, by a request or by a delete that came first."""
    return {
        "video_id": video_id,
        "source_key": source_key,
        "status": status.value,
        "request_event_id": event_id,
        "owner": "",
        "lease_until": None,
        "attempts": 0,
        "error": "",
        "created_at": now,
        "updated_at": now,
    }


async def _insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> None:
    # The first statement of the transaction is a write: SQLite takes its write lock
    # now (waiting on busy_timeout), instead of failing to upgrade a read snapshot.
    dialect = session.get_bind().dialect.name
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    await session.execute(
        insert(_TABLE).values(values).on_conflict_do_nothing(index_elements=["video_id"])
    )


async def claim_job(
    sessions: async_sessionmaker[AsyncSession],
    *,
    video_id: str,
    request_event_id: str,
    owner: str,
    lease_s: float,
    redelivery: bool,
    source_key: str = "",
) -> Claim:
    """Decide what this delivery does with the video's job (see the module doc)."""
    now = _now()
    async with sessions() as session, session.begin():
        await _insert_if_absent(
            session, _new_row(video_id, JobStatus.RUNNING, request_event_id, now, source_key)
        )
        row = (
            await session.execute(
                select(TranscodeJob).where(TranscodeJob.video_id == video_id).with_for_update()
            )
        ).scalar_one()
        if source_key and not row.source_key:
            row.source_key = source_key
        status = JobStatus(row.status)
        if status is JobStatus.DELETED:
            return Claim(ClaimOutcome.DELETED, row.attempts, row.owner)
        if status is JobStatus.PUBLISHED:
            return Claim(ClaimOutcome.DONE, row.attempts, row.owner)
        if status is JobStatus.ENCODED:
            return Claim(ClaimOutcome.PUBLISH, row.attempts, row.owner)
        lease_live = row.lease_until is not None and row.lease_until > now
        if status is JobStatus.RUNNING and lease_live and row.owner != owner and not redelivery:
            return Claim(ClaimOutcome.BUSY, row.attempts, row.owner)
        row.status = JobStatus.RUNNING.value
        row.request_event_id = request_event_id
        row.owner = owner
        row.lease_until = now + dt.timedelta(seconds=lease_s)
        row.attempts += 1
        row.error = ""
        row.updated_at = now
        return Claim(ClaimOutcome.RUN, row.attempts, owner)


async def renew_lease(
    sessions: async_sessionmaker[AsyncSession], *, video_id: str, owner: str, lease_s: float
) -> bool:
    """Extend our lease; False when someone took the job over."""
    now = _now()
    async with sessions() as session, session.begin():
        result = cast(
            CursorResult[Any],
            await session.execute(
                update(_TABLE)
                .where(_TABLE.c.video_id == video_id, _TABLE.c.owner == owner)
                .where(_TABLE.c.status == JobStatus.RUNNING.value)
                .values(lease_until=now + dt.timedelta(seconds=lease_s), updated_at=now)
            ),
        )
        return result.rowcount == 1


async def record_failure(
    sessions: async_sessionmaker[AsyncSession],
    *,
    video_id: str,
    owner: str,
    reason: str,
    permanent: bool,
) -> None:
    """Drop our lease (a retry may start at once); ``permanent`` marks the job failed."""
    now = _now()
    values: dict[str, Any] = {"lease_until": None, "error": reason[:2000], "updated_at": now}
    if permanent:
        values["status"] = JobStatus.FAILED.value
    async with sessions() as session, session.begin():
        await session.execute(
            update(_TABLE)
            .where(_TABLE.c.video_id == video_id, _TABLE.c.owner == owner)
            .where(_TABLE.c.status == JobStatus.RUNNING.value)
            .values(values)
        )


async def store_result(
    sessions: async_sessionmaker[AsyncSession], *, video_id: str, result_json: str
) -> TranscodeJob:
    """Keep the result and fix the ids of the events that will announce it.

    The first result wins: a concurrent duplicate run (same keys, same content) finds
    the row encoded or published and gets the stored row back unchanged.
    """
    now = _now()
    async with sessions() as session, session.begin():
        await session.execute(
            update(_TABLE)
            .where(_TABLE.c.video_id == video_id)
            .where(_TABLE.c.status.in_([JobStatus.RUNNING.value, JobStatus.FAILED.value]))
            .values(
                status=JobStatus.ENCODED.value,
                result=result_json,
                completed_event_id=new_event_id(),
                published_event_id=new_event_id(),
                lease_until=None,
                error="",
                updated_at=now,
            )
        )
        return (
            await session.execute(select(TranscodeJob).where(TranscodeJob.video_id == video_id))
        ).scalar_one()


async def load(sessions: async_sessionmaker[AsyncSession], video_id: str) -> TranscodeJob | None:
    async with sessions() as session:
        return await session.get(TranscodeJob, video_id)


async def mark_published(session: AsyncSession, video_id: str) -> bool:
    """encoded → published in the caller's transaction; False if someone else did it."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(_TABLE)
            .where(_TABLE.c.video_id == video_id, _TABLE.c.status == JobStatus.ENCODED.value)
            .values(status=JobStatus.PUBLISHED.value, updated_at=_now())
        ),
    )
    return result.rowcount == 1


async def mark_deleted(
    sessions: async_sessionmaker[AsyncSession], *, video_id: str, event_id: str
) -> str:
    """Any state → deleted (a row is made if no request came yet): from now on no
    delivery publishes the video, and :func:`mark_published` finds nothing to move.
    Returns the source a request handed the job ("" if none came yet)."""
    now = _now()
    async with sessions() as session, session.begin():
        await _insert_if_absent(session, _new_row(video_id, JobStatus.DELETED, event_id, now))
        await session.execute(
            update(_TABLE)
            .where(_TABLE.c.video_id == video_id, _TABLE.c.status != JobStatus.DELETED.value)
            .values(status=JobStatus.DELETED.value, lease_until=None, updated_at=now)
        )
        source: str | None = await session.scalar(
            select(_TABLE.c.source_key).where(_TABLE.c.video_id == video_id)
        )
        return source or ""
