"""Live statistics: the caller's channel, and any channel's (public).

Numbers come from this process's in-memory aggregate of ``stats.*`` and
``chat.accepted`` events plus the catalog's channel row (``gateway.projections.stats``):
every gateway process answers the same without sharing memory.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

from litestar import Router, get
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter

from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUser
from gateway.errors import NotFoundError
from gateway.projections import Projections, provide_projections, queries
from gateway.projections.stats import LiveStats, live_stats

__all__ = ["routers", "stats_router"]

StreamId = Annotated[str, PathParameter(min_length=1, max_length=128)]


@get("/stats/live", security=REQUIRES_AUTH, summary="Live stats of the caller's channel")
async def my_live_stats(
    current_user: NamedDependency[CurrentUser], projections: NamedDependency[Projections]
) -> LiveStats:
    """Viewers now, peak of this broadcast, ingest bitrate, fps and keyframe interval,
    uptime, chat rate."""
    async with projections.sessions() as session:
        channel = await queries.channel_of_user(session, current_user.user_id)
    if channel is None:
        raise NotFoundError("your channel is not in the catalog yet; try again in a moment")
    return live_stats(projections.stats, channel, dt.datetime.now(dt.UTC))


@get("/streams/{stream_id:str}/stats", summary="Live stats of a channel")
async def channel_stats(
    stream_id: StreamId, projections: NamedDependency[Projections]
) -> LiveStats:
    async with projections.sessions() as session:
        channel = await queries.channel(session, stream_id)
    if channel is None:
        raise NotFoundError(f"no channel {stream_id!r}")
    return live_stats(projections.stats, channel, dt.datetime.now(dt.UTC))


stats_router = Router(
    "/api/v2",
    route_handlers=[my_live_stats, channel_stats],
    dependencies={"projections": Provide(provide_projections, sync_to_thread=False)},
    tags=["stats"],
)

# What gateway/app.py mounts: `route_handlers=[..., *stats.routers]`.
routers: Final = [stats_router]
