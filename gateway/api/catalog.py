"""The public catalog: live channels and videos, read from the catalog projection.

Reads never touch another component: the tables are the gateway's projection of the
event log (``gateway.projections``). The one write, ``DELETE /api/v2/videos/{id}``,
publishes ``video.deleted`` and answers 202; the projection marks the video deleted
when the event comes back through the log, in every gateway process alike. The event
carries where the video's sources lie (upload, broadcast), so the transcoder removes
its media (``transcoder/deletion.py``); delivery stops at once (``gateway/vod/gone.py``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Router, delete, get
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from events.catalog import VideoDeleted
from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUser
from gateway.auth.routes import correlation_id
from gateway.errors import ApiError, NotFoundError
from gateway.projections import Projections, provide_projections, queries
from gateway.projections.reducer import ChannelRow, VideoRow
from gateway.projections.stats import LiveStats, live_stats

__all__ = ["catalog_router", "routers"]

MAX_ID_LENGTH: Final = 128
MAX_CURSOR_LENGTH: Final = 512

StreamId = Annotated[str, PathParameter(min_length=1, max_length=MAX_ID_LENGTH)]
VideoId = Annotated[str, PathParameter(min_length=1, max_length=MAX_ID_LENGTH)]


class ForbiddenError(ApiError):
    status_code = 403
    slug = "forbidden"
    title = "Forbidden"


# --- response shapes ------------------------------------------------------------


class LiveChannelOut(msgspec.Struct, kw_only=True):
    stream_id: str
    user_id: str | None
    username: str | None
    title: str
    viewers: int
    started_at: dt.datetime | None
    thumbnail_url: str | None
    # The live picture, renewed by ingest every few seconds (stream.thumbnail).
    live_thumbnail_url: str
    playback_url: str


class ChannelOut(msgspec.Struct, kw_only=True):
    stream_id: str
    user_id: str | None
    username: str | None
    title: str
    description: str
    live: bool
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    thumbnail_url: str | None
    playback_url: str
    chat_channel: str
    stats: LiveStats


class VideoOut(msgspec.Struct, kw_only=True):
    video_id: str
    user_id: str | None
    username: str | None
    title: str
    description: str
    duration_s: float
    status: str  # processing | ready | failed
    progress: float  # percent, 0..100
    error: str | None
    origin: str | None  # upload | recording
    stream_id: str | None
    width: int | None
    height: int | None
    created_at: dt.datetime | None
    published_at: dt.datetime | None
    poster_url: str | None
    playback_url: str | None


class VideoPage(msgspec.Struct, kw_only=True):
    items: list[VideoOut]
    # Pass as `?cursor=` for the next page; null on the last page.
    next_cursor: str | None


class DeleteAccepted(msgspec.Struct, kw_only=True):
    video_id: str
    status: str = "deleting"


# --- URLs -------------------------------------------------------------------------


def _vod_url(video_id: str, key: str | None, master_key: str | None) -> str | None:
    """Public URL of an object of a VOD: ``/vod/{video_id}/<path under its folder>``.

    VOD delivery serves a video's files relative to its master playlist's folder
    (DESIGN.md: ``/vod/{video_id}/master.m3u8`` + renditions, thumbnails, poster).
    """
    if not key:
        return None
    folder = master_key.rpartition("/")[0] if master_key else ""
    relative = (
        key[len(folder) + 1 :]
        if folder and key.startswith(folder + "/")
        else key.rpartition("/")[2]
    )
    return f"/vod/{video_id}/{relative}"


def _thumbnail_url(channel: ChannelRow) -> str | None:
    if channel.poster_video_id is None:
        return None
    return _vod_url(channel.poster_video_id, channel.poster_key, None)


def _playback_url(stream_id: str) -> str:
    return f"/live/{stream_id}/index.m3u8"


def _video_out(row: VideoRow, usernames: dict[str, str]) -> VideoOut:
    ready = row.status == "ready"
    return VideoOut(
        video_id=row.video_id,
        user_id=row.user_id,
        username=usernames.get(row.user_id or ""),
        title=row.title,
        description=row.description,
        duration_s=row.duration_s,
        status=row.status,
        progress=row.progress,
        error=row.error,
        origin=row.origin,
        stream_id=row.stream_id,
        width=row.width,
        height=row.height,
        created_at=row.created_at,
        published_at=row.published_at,
        poster_url=_vod_url(row.video_id, row.poster_key, row.master_key),
        playback_url=f"/vod/{row.video_id}/master.m3u8" if ready else None,
    )


# --- cursors ----------------------------------------------------------------------


def encode_cursor(cursor: queries.VideoCursor) -> str:
    raw = msgspec.json.encode([cursor.sort_at.isoformat(), cursor.video_id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(text: str) -> queries.VideoCursor:
    """Opaque to clients; anything we did not issue is a 400, never a 500."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        sort_at_text, video_id = msgspec.json.decode(raw, type=tuple[str, str])
        sort_at = dt.datetime.fromisoformat(sort_at_text)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError("cursor: not a cursor this API issued; start again without it") from exc
    if sort_at.tzinfo is None or not video_id or len(video_id) > MAX_ID_LENGTH:
        raise ApiError("cursor: not a cursor this API issued; start again without it")
    return queries.VideoCursor(sort_at, video_id)


# --- routes -----------------------------------------------------------------------


@get("/streams/live", summary="Live channels, most watched first")
async def list_live(
    projections: NamedDependency[Projections],
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> list[LiveChannelOut]:
    async with projections.sessions() as session:
        channels = await queries.live_channels(session)
    now = dt.datetime.now(dt.UTC).timestamp()
    out = [
        LiveChannelOut(
            stream_id=c.stream_id,
            user_id=c.user_id,
            username=c.username,
            title=c.title,
            viewers=projections.stats.viewers(c.stream_id, now),
            started_at=c.started_at,
            thumbnail_url=_thumbnail_url(c),
            live_thumbnail_url=f"/live/{c.stream_id}/thumbnail.jpg",
            playback_url=_playback_url(c.stream_id),
        )
        for c in channels
    ]
    out.sort(key=lambda c: -c.viewers)  # stable: equal counts stay longest-live first
    return out[:limit]


@get("/streams/{stream_id:str}", summary="A channel, its live state and stats")
async def get_channel(stream_id: StreamId, projections: NamedDependency[Projections]) -> ChannelOut:
    async with projections.sessions() as session:
        channel = await queries.channel(session, stream_id)
    if channel is None:
        raise NotFoundError(f"no channel {stream_id!r}")
    return ChannelOut(
        stream_id=channel.stream_id,
        user_id=channel.user_id,
        username=channel.username,
        title=channel.title,
        description=channel.description,
        live=channel.live,
        started_at=channel.started_at,
        ended_at=channel.ended_at,
        video_codec=channel.video_codec,
        audio_codec=channel.audio_codec,
        width=channel.width,
        height=channel.height,
        fps=channel.fps,
        thumbnail_url=_thumbnail_url(channel),
        playback_url=_playback_url(channel.stream_id),
        chat_channel=f"chat:{channel.stream_id}",
        stats=live_stats(projections.stats, channel, dt.datetime.now(dt.UTC)),
    )


@get("/videos", summary="Published videos, newest first (cursor-paginated)")
async def list_videos(
    projections: NamedDependency[Projections],
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, QueryParameter(max_length=MAX_CURSOR_LENGTH)] = None,
    user: Annotated[str | None, QueryParameter(min_length=1, max_length=MAX_ID_LENGTH)] = None,
) -> VideoPage:
    """`user`: a username or a user id. Only ready videos are listed."""
    after = decode_cursor(cursor) if cursor else None
    async with projections.sessions() as session:
        rows, next_cursor = await queries.videos_page(session, limit=limit, after=after, user=user)
        usernames = await queries.username_of(session, {r.user_id for r in rows if r.user_id})
    return VideoPage(
        items=[_video_out(row, usernames) for row in rows],
        next_cursor=encode_cursor(next_cursor) if next_cursor else None,
    )


@get("/videos/{video_id:str}", summary="One video (processing, ready or failed)")
async def get_video(video_id: VideoId, projections: NamedDependency[Projections]) -> VideoOut:
    async with projections.sessions() as session:
        row = await queries.video(session, video_id)
        if row is None:
            raise NotFoundError(f"no video {video_id!r}")
        usernames = await queries.username_of(session, {row.user_id} if row.user_id else set())
    return _video_out(row, usernames)


@delete(
    "/videos/{video_id:str}",
    status_code=HTTP_202_ACCEPTED,
    security=REQUIRES_AUTH,
    summary="Delete one of your videos",
)
async def delete_video(
    video_id: VideoId,
    current_user: NamedDependency[CurrentUser],
    projections: NamedDependency[Projections],
    request: Request[Any, Any, Any],
) -> DeleteAccepted:
    """Owner only. Publishes `video.deleted`; the video disappears from the catalog as
    soon as the projection applies it (202: asynchronous)."""
    async with projections.sessions() as session:
        row = await queries.video(session, video_id)
    if row is None or row.user_id is None:
        raise NotFoundError(f"no video {video_id!r}")
    if row.user_id != current_user.user_id:
        raise ForbiddenError("only the owner can delete this video")
    await projections.publisher.publish(
        VideoDeleted(
            video_id=video_id,
            user_id=current_user.user_id,
            upload_id=row.upload_id or "",
            stream_id=row.stream_id or "",
            session_id=row.session_id or "",
        ),
        correlation_id=correlation_id(request),
    )
    return DeleteAccepted(video_id=video_id)


catalog_router = Router(
    "/api/v2",
    route_handlers=[list_live, get_channel, list_videos, get_video, delete_video],
    dependencies={"projections": Provide(provide_projections, sync_to_thread=False)},
    tags=["catalog"],
)

# What gateway/app.py mounts: `route_handlers=[..., *catalog.routers]`.
routers: Final = [catalog_router]
