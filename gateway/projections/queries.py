"""The read side of the catalog: what the HTTP routes ask the projection tables.

Rows come back as the reducer's row Structs (the storage shape); the routes turn them
into response Structs. Usernames of videos are joined from the users table at read
time rather than copied into every video row (``user.registered`` and the video
events live in different streams, see ``reducer.py``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.projections._store import CHANNELS, USERS, VIDEOS
from gateway.projections.reducer import DELETED, READY, ChannelRow, VideoRow

__all__ = [
    "VideoCursor",
    "channel",
    "channel_of_user",
    "live_channels",
    "username_of",
    "video",
    "video_deleted",
    "videos_page",
]


@dataclass(frozen=True)
class VideoCursor:
    """Keyset position: the last row of the previous page (newest first)."""

    sort_at: dt.datetime
    video_id: str


# The live list is sorted by viewers, which live in memory, not in the table: read
# every live channel (a self-hosted instance has few) up to this bound, then sort.
MAX_LIVE_CHANNELS = 5000


async def live_channels(session: AsyncSession) -> list[ChannelRow]:
    """Live channels, longest running first (at most ``MAX_LIVE_CHANNELS``)."""
    rows = await session.execute(
        select(CHANNELS)
        .where(CHANNELS.c.live.is_(True))
        .order_by(CHANNELS.c.started_at, CHANNELS.c.stream_id)
        .limit(MAX_LIVE_CHANNELS)
    )
    return [ChannelRow(**m) for m in rows.mappings()]


async def channel(session: AsyncSession, stream_id: str) -> ChannelRow | None:
    row = (
        (await session.execute(select(CHANNELS).where(CHANNELS.c.stream_id == stream_id)))
        .mappings()
        .first()
    )
    return ChannelRow(**row) if row is not None else None


async def channel_of_user(session: AsyncSession, user_id: str) -> ChannelRow | None:
    row = (
        (await session.execute(select(CHANNELS).where(CHANNELS.c.user_id == user_id).limit(1)))
        .mappings()
        .first()
    )
    return ChannelRow(**row) if row is not None else None


async def username_of(session: AsyncSession, user_ids: set[str]) -> dict[str, str]:
    if not user_ids:
        return {}
    rows = await session.execute(
        select(USERS.c.user_id, USERS.c.username).where(USERS.c.user_id.in_(sorted(user_ids)))
    )
    return {str(user_id): str(username) for user_id, username in rows.all()}


async def video(session: AsyncSession, video_id: str) -> VideoRow | None:
    """A video in any state but deleted (a deleted video is gone for readers)."""
    row = (
        (
            await session.execute(
                select(VIDEOS).where(VIDEOS.c.video_id == video_id, VIDEOS.c.status != DELETED)
            )
        )
        .mappings()
        .first()
    )
    return VideoRow(**row) if row is not None else None


async def video_deleted(session: AsyncSession, video_id: str) -> bool:
    """Whether ``video_id`` is deleted (an unknown video is not: see gateway/vod/gone.py)."""
    status = await session.scalar(select(VIDEOS.c.status).where(VIDEOS.c.video_id == video_id))
    return status == DELETED


async def videos_page(
    session: AsyncSession,
    *,
    limit: int,
    after: VideoCursor | None = None,
    user: str | None = None,
    status: str = READY,
) -> tuple[list[VideoRow], VideoCursor | None]:
    """One page, newest first; the cursor for the next page, or None on the last."""
    query = select(VIDEOS).where(VIDEOS.c.status == status)
    if user is not None:
        # Either the public username or the user id.
        by_name = select(USERS.c.user_id).where(USERS.c.username == user)
        query = query.where(or_(VIDEOS.c.user_id == user, VIDEOS.c.user_id.in_(by_name)))
    if after is not None:
        query = query.where(
            or_(
                VIDEOS.c.sort_at < after.sort_at,
                and_(VIDEOS.c.sort_at == after.sort_at, VIDEOS.c.video_id < after.video_id),
            )
        )
    query = query.order_by(VIDEOS.c.sort_at.desc(), VIDEOS.c.video_id.desc()).limit(limit + 1)
    rows = [VideoRow(**m) for m in (await session.execute(query)).mappings()]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, VideoCursor(rows[-1].sort_at, rows[-1].video_id)
