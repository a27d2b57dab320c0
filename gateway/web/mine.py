"""``GET /api/v2/me/videos``: the caller's videos in every state, for the studio.

The public catalog lists ready videos only; a creator also wants to see what is still
transcoding (with its progress) and what failed (with the reason).
"""

from __future__ import annotations

from typing import Final

from litestar import get
from litestar.di import NamedDependency

# The catalog's own row → response conversion: the same URLs as the public API.
from gateway.api.catalog import VideoOut, _video_out
from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUser
from gateway.projections import Projections, queries
from gateway.projections.reducer import FAILED, PROCESSING, READY

PER_STATE_LIMIT: Final = 50


@get("/api/v2/me/videos", security=REQUIRES_AUTH, summary="Your videos, in every state")
async def my_videos(
    current_user: NamedDependency[CurrentUser], projections: NamedDependency[Projections]
) -> list[VideoOut]:
    """Newest first: processing (with progress), ready and failed (with the error)."""
    user_id = current_user.user_id
    rows = []
    async with projections.sessions() as session:
        for status in (PROCESSING, READY, FAILED):
            page, _ = await queries.videos_page(
                session, limit=PER_STATE_LIMIT, user=user_id, status=status
            )
            rows.extend(page)
        usernames = await queries.username_of(session, {user_id})
    rows.sort(key=lambda row: (row.sort_at, row.video_id), reverse=True)
    return [_video_out(row, usernames) for row in rows]
