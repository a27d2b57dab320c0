"""VOD delivery: the transcoder's HLS output, poster, thumbnails and sprite, from the store.

    GET|HEAD /vod/{video_id}/master.m3u8
    GET|HEAD /vod/{video_id}/{name}              poster.jpg, sprite.jpg, sprite.vtt
    GET|HEAD /vod/{video_id}/{folder}/{name}     720p/index.m3u8, 720p/init.mp4,
                                                 720p/seg_00000.m4s, thumbs/thumb_000.jpg

Every path segment is checked against a strict pattern before a key is built, and the
key is ``vod/{video_id}/…`` validated again by the store: nothing outside a video's own
prefix can be named (no ``..``, no ``%2F``, no hidden files), and anything unknown is a
404 problem. Only the file types the transcoder writes are served, each with its own
content type (NOTES.md, Litestar: ``video/mp4`` for init and ``.m4s``).

Caching: a segment, init or image under a video's key never changes once written
(keys are deterministic and a rerun writes the same bytes), hence
``immutable`` for a year; playlists and the VTT track get a short lifetime. The master
playlist is revalidated on every use (``no-cache``; a 304 costs a round trip only): a
live recording's master names its live segments until the transcode of the recording
overwrites it with the ladder's, and players should switch to the ladder then.
Media and images honour single byte ranges (:mod:`gateway.vod.ranges`) and
``If-Range``; every file answers ``If-None-Match`` with 304.

A deleted video answers 404 on every path (:mod:`gateway.vod.gone`: one cached lookup,
not a query per segment). Its immutable files already in a CDN or browser cache may
outlive the delete by their max-age: accepted (the store copies are removed).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final

from litestar import Request, Response, Router, route
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod
from litestar.exceptions import NotFoundException
from litestar.openapi import ResponseSpec
from litestar.params import FromPath
from litestar.response import Stream
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_206_PARTIAL_CONTENT,
    HTTP_304_NOT_MODIFIED,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
)

from common.store import (
    InvalidKey,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStream,
    StoreUnavailable,
    validate_key,
)
from gateway.errors import PROBLEM_JSON, UnavailableError, problem_response
from gateway.vod.gone import GONE_STATE_KEY, DeletedVideos
from gateway.vod.ranges import ByteRange, Unsatisfiable, parse_range

__all__ = ["VOD_STATE_KEY", "vod_router"]

VOD_STATE_KEY: Final = "vod_store"

_VIDEO_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FOLDER: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,128}\.(m3u8|mp4|m4s|jpg|vtt)")

CONTENT_TYPES: Final[dict[str, str]] = {
    "m3u8": "application/vnd.apple.mpegurl",
    "mp4": "video/mp4",
    "m4s": "video/mp4",
    "jpg": "image/jpeg",
    "vtt": "text/vtt",  # litestar adds "; charset=utf-8" to text types
}
IMMUTABLE: Final = "public, max-age=31536000, immutable"
# Playlists of a finished video do not change, but a re-transcode rewrites them.
SHORT: Final = "public, max-age=60"
# The master of a recording is replaced once its ladder exists (see above).
REVALIDATE: Final = "public, no-cache"
MASTER_NAME: Final = "master.m3u8"
# Files small enough to read in one go rather than stream.
SMALL_FILE: Final = 256 * 1024


StoreDep = NamedDependency[ObjectStore]


def provide_store(state: State) -> ObjectStore:
    store = state.get(VOD_STATE_KEY)
    if not isinstance(store, ObjectStore):
        raise UnavailableError("video delivery is starting or stopping")
    return store


def _key(video_id: str, *parts: str) -> tuple[str, str]:
    """The object key and file extension, or 404 for anything we never write."""
    name = parts[-1]
    match = _NAME.fullmatch(name)
    if not _VIDEO_ID.fullmatch(video_id) or match is None:
        raise NotFoundException(detail="no such video file")
    if any(not _FOLDER.fullmatch(folder) for folder in parts[:-1]):
        raise NotFoundException(detail="no such video file")
    try:
        key = validate_key("/".join(("vod", video_id, *parts)))
    except InvalidKey as exc:  # belt and braces: the patterns above already exclude it
        raise NotFoundException(detail="no such video file") from exc
    return key, match.group(1)


def _etag(info: ObjectInfo) -> str:
    return '"' + info.etag.strip('"') + '"'


def _matches_none(header: str, etag: str) -> bool:
    """If-None-Match (RFC 9110 §13.1.2, weak comparison)."""
    if header.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in header.split(","))


def _if_range_holds(header: str | None, info: ObjectInfo) -> bool:
    """If-Range (RFC 9110 §13.1.5): serve the range only if the validator matches exactly."""
    if header is None:
        return True
    header = header.strip()
    if header.startswith(('"', "W/")):
        return header == _etag(info)  # strong comparison; weak tags never match
    try:
        return parsedate_to_datetime(header) == info.last_modified.replace(microsecond=0)
    except (TypeError, ValueError):
        return False


def _cache_control(parts: tuple[str, ...], extension: str) -> str:
    if parts == (MASTER_NAME,):
        return REVALIDATE
    return SHORT if extension in ("m3u8", "vtt") else IMMUTABLE


def _headers(info: ObjectInfo, extension: str, cache_control: str) -> dict[str, str]:
    playlist = extension in ("m3u8", "vtt")
    headers = {
        "Cache-Control": cache_control,
        "ETag": _etag(info),
        "Last-Modified": format_datetime(info.last_modified, usegmt=True),
    }
    if not playlist:
        headers["Accept-Ranges"] = "bytes"
    return headers


async def _chunks(stream: ObjectStream) -> AsyncIterator[bytes]:
    # ``async with``: a client that hangs up mid-segment must not leave the store's
    # connection checked out until garbage collection.
    async with stream:
        async for chunk in stream:
            yield chunk


async def _check_not_deleted(request: Request[Any, Any, Any], video_id: str) -> None:
    gone = request.app.state.get(GONE_STATE_KEY)
    # Absent only in an app without the catalog (vod_lifespan needs the core services).
    if isinstance(gone, DeletedVideos) and await gone.is_deleted(video_id):
        raise NotFoundException(detail="no such video: it was deleted")


async def _serve(request: Request[Any, Any, Any], store: ObjectStore, *parts: str) -> Response[Any]:
    key, extension = _key(*parts)
    await _check_not_deleted(request, parts[0])
    try:
        info = await store.stat(key)
    except ObjectNotFound as exc:
        raise NotFoundException(detail="no such video file") from exc
    except StoreUnavailable as exc:
        raise UnavailableError("the media store is unavailable; try again shortly") from exc
    media_type = CONTENT_TYPES[extension]
    headers = _headers(info, extension, _cache_control(parts[1:], extension))
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and _matches_none(if_none_match, headers["ETag"]):
        return Response(content=b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)

    decision = None
    if "Accept-Ranges" in headers and _if_range_holds(request.headers.get("if-range"), info):
        decision = parse_range(request.headers.get("range"), info.size)
    if isinstance(decision, Unsatisfiable):
        return problem_response(
            HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
            f"the range is outside the file ({info.size} bytes)",
            slug="range-not-satisfiable",
            title="Range not satisfiable",
            headers={**headers, "Content-Range": decision.content_range},
        )
    byte_range = decision if isinstance(decision, ByteRange) else ByteRange(0, info.size - 1)
    status = HTTP_206_PARTIAL_CONTENT if isinstance(decision, ByteRange) else HTTP_200_OK
    if status == HTTP_206_PARTIAL_CONTENT:
        headers["Content-Range"] = byte_range.content_range(info.size)
    headers["Content-Length"] = str(max(0, byte_range.length))
    if request.method == HttpMethod.HEAD:
        return Response(content=b"", status_code=status, media_type=media_type, headers=headers)
    return await _body(
        store=store,
        key=key,
        byte_range=byte_range,
        info=info,
        status=status,
        media_type=media_type,
        headers=headers,
    )


async def _body(
    *,
    store: ObjectStore,
    key: str,
    byte_range: ByteRange,
    info: ObjectInfo,
    status: int,
    media_type: str,
    headers: dict[str, str],
) -> Response[Any]:
    try:
        if info.size == 0:
            body = b""
        elif byte_range.length <= SMALL_FILE:
            body = await store.read_range(key, byte_range.start, byte_range.end)
        else:
            stream = await store.get_range(key, byte_range.start, byte_range.end)
            return Stream(
                _chunks(stream), status_code=status, media_type=media_type, headers=headers
            )
    except ObjectNotFound as exc:  # deleted between stat and read
        raise NotFoundException(detail="no such video file") from exc
    except InvalidRange as exc:  # rewritten shorter between stat and read
        raise UnavailableError("the file changed while being read; try again") from exc
    except StoreUnavailable as exc:
        raise UnavailableError("the media store is unavailable; try again shortly") from exc
    return Response(content=body, status_code=status, media_type=media_type, headers=headers)


_METHODS: Final = [HttpMethod.GET, HttpMethod.HEAD]


@dataclass
class VodProblem:
    """RFC 9457 problem details, as gateway.errors writes them (documentation only)."""

    type: str
    title: str
    status: int
    detail: str


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        VodProblem, description=description, media_type=PROBLEM_JSON, generate_examples=False
    )


# What the routes answer besides 200, for the OpenAPI document.
_RESPONSES: Final[dict[int, ResponseSpec]] = {
    HTTP_304_NOT_MODIFIED: ResponseSpec(None, description="Not modified (If-None-Match)"),
    404: _problem("No such video, or not a file the transcoder writes"),
}
_RANGE_RESPONSES: Final[dict[int, ResponseSpec]] = {
    **_RESPONSES,
    HTTP_206_PARTIAL_CONTENT: ResponseSpec(
        bytes,
        description="One byte range (Range: bytes=a-b, a-, -n); multi-range gets the whole file",
        media_type="video/mp4",
        generate_examples=False,
    ),
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE: _problem(
        "The range starts past the end (Content-Range: bytes */size)"
    ),
}


@route(
    "/{video_id:str}/master.m3u8",
    http_method=_METHODS,
    summary="A video's master playlist (HLS, fMP4 renditions)",
    media_type="application/vnd.apple.mpegurl",
    responses=_RESPONSES,
)
async def master_playlist(
    request: Request[Any, Any, Any], store: StoreDep, video_id: FromPath[str]
) -> Response[Any]:
    return await _serve(request, store, video_id, MASTER_NAME)


@route(
    "/{video_id:str}/{name:str}",
    http_method=_METHODS,
    summary="A video's poster, sprite sheet or sprite WebVTT track",
    media_type="image/jpeg",
    responses=_RANGE_RESPONSES,
)
async def video_file(
    request: Request[Any, Any, Any],
    store: StoreDep,
    video_id: FromPath[str],
    name: FromPath[str],
) -> Response[Any]:
    return await _serve(request, store, video_id, name)


@route(
    "/{video_id:str}/{folder:str}/{name:str}",
    http_method=_METHODS,
    summary="A rendition's playlist, init or media segment, or a thumbnail (Range supported)",
    media_type="video/mp4",
    responses=_RANGE_RESPONSES,
)
async def rendition_file(
    request: Request[Any, Any, Any],
    store: StoreDep,
    video_id: FromPath[str],
    folder: FromPath[str],
    name: FromPath[str],
) -> Response[Any]:
    return await _serve(request, store, video_id, folder, name)


vod_router = Router(
    path="/vod",
    route_handlers=[master_playlist, video_file, rendition_file],
    dependencies={"store": Provide(provide_store, sync_to_thread=False)},
    tags=["vod"],
)
