"""The HTML pages. Public data is rendered on the server; what needs the user's token
(studio, upload) is filled in by the page's module from the API.

The catalog's own route handlers are called for the data (``handler.fn``), so a page
shows exactly what the JSON API answers.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter

from common.settings import Settings
from gateway.api import catalog
from gateway.errors import NotFoundError
from gateway.projections import Projections
from gateway.web.templating import render_page

HOME_LIVE_LIMIT: Final = 24
HOME_VIDEO_LIMIT: Final = 24

PageId = Annotated[str, PathParameter(min_length=1, max_length=catalog.MAX_ID_LENGTH)]


def _settings(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _not_found(what: str) -> Response[str]:
    return render_page("not_found.html", status_code=404, page="", what=what)


@get("/", include_in_schema=False)
async def home(projections: NamedDependency[Projections]) -> Response[str]:
    live: list[catalog.LiveChannelOut] = await catalog.list_live.fn(
        projections=projections, limit=HOME_LIVE_LIMIT
    )
    videos: catalog.VideoPage = await catalog.list_videos.fn(
        projections=projections, limit=HOME_VIDEO_LIMIT, cursor=None, user=None
    )
    return render_page("home.html", page="home", live=live, videos=videos.items)


@get("/watch/{stream_id:str}", include_in_schema=False)
async def watch_live(stream_id: PageId, projections: NamedDependency[Projections]) -> Response[str]:
    try:
        channel: catalog.ChannelOut = await catalog.get_channel.fn(
            stream_id=stream_id, projections=projections
        )
    except NotFoundError:
        return _not_found("channel")
    return render_page("watch.html", page="watch", channel=channel)


@get("/v/{video_id:str}", include_in_schema=False)
async def watch_video(video_id: PageId, projections: NamedDependency[Projections]) -> Response[str]:
    try:
        video: catalog.VideoOut = await catalog.get_video.fn(
            video_id=video_id, projections=projections
        )
    except NotFoundError:
        return _not_found("video")
    return render_page("video.html", page="video", video=video)


@get("/upload", include_in_schema=False)
async def upload() -> Response[str]:
    return render_page("upload.html", page="upload")


@get("/studio", include_in_schema=False)
async def studio(request: Request[Any, Any, Any]) -> Response[str]:
    return render_page("studio.html", page="studio", rtmp_url=_settings(request).rtmp_public_url)


@get("/login", include_in_schema=False)
async def login() -> Response[str]:
    return render_page("auth.html", page="login", mode="login")


@get("/register", include_in_schema=False)
async def register() -> Response[str]:
    return render_page("auth.html", page="register", mode="register")


@get("/logout", include_in_schema=False)
async def logout() -> Response[str]:
    return render_page("logout.html", page="logout")


PAGES: Final = [home, watch_live, watch_video, upload, studio, login, register, logout]
