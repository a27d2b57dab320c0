"""``GET /live/{stream_id}/index.m3u8`` and the media objects it names.

Content types: playlists ``application/vnd.apple.mpegurl`` (RFC 8216bis §4); init,
segments and parts ``video/mp4`` — what hls.js (which ignores it) and Safari's native
player both accept; ``video/iso.segment`` is registered for .m4s but buys nothing.

Caching: a plain playlist request is ``no-cache`` (it changes every part). The answer
to a blocking request may be cached briefly — any later answer is at least as new, so
a CDN may collapse the same ``_HLS_msn``/``_HLS_part`` requests into one. Media objects
are immutable (the session id is in the URI): one year, ``immutable`` — so is a
broadcast's ``recording.m3u8``, written once when it ends. The live
thumbnail is the stream's current picture, replaced every few seconds: read past the
media cache, cached by clients for :data:`THUMBNAIL_MAX_AGE_S`.

An ended broadcast whose recording video was deleted answers 404 (the check and why
a CDN may keep its immutable objects a while: ``gateway/vod/gone.py``).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Request, Response, Router, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from common.store import ObjectNotFound, StoreError
from gateway.errors import UnavailableError
from gateway.live import keys
from gateway.live.reload import ReloadError, Verdict, parse_directives, verdict
from gateway.live.service import (
    BadPlaylistRequest,
    LiveMediaNotFound,
    LiveService,
    LiveStreamNotFound,
    LiveStreamOffline,
    PlaylistNotReady,
    RangeNotSatisfiable,
)
from gateway.live.state import SessionPlaylist
from gateway.live.viewers import viewer_key
from gateway.vod.gone import GONE_STATE_KEY, DeletedVideos

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "video/mp4"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# Blocked longer than three target durations → 503 (§6.2.5.2).
BLOCK_TARGETS = 3
# Ingest renews the thumbnail every 10 s by default: a card is at most ~15 s old.
THUMBNAIL_MAX_AGE_S = 5


def provide_live(state: State) -> LiveService:
    live = state.get("live")
    if not isinstance(live, LiveService):
        raise UnavailableError("live delivery is starting or stopping")
    return live


LiveDep = NamedDependency[LiveService]


def _current(live: LiveService, stream_id: str) -> SessionPlaylist:
    if not keys.is_id(stream_id):
        raise LiveStreamNotFound(f"no live stream {stream_id[:64]!r}")
    session = live.state.playlist(stream_id)
    if session is None:
        if live.state.knows(stream_id):
            raise LiveStreamOffline(f"stream {stream_id} is offline: nothing is being broadcast")
        raise LiveStreamNotFound(f"no live stream {stream_id!r}")
    return session


@get(
    "/{stream_id:str}/index.m3u8",
    summary="LL-HLS media playlist of a live stream",
    description=(
        "Supports blocking reload (`_HLS_msn`, `_HLS_part`, RFC 8216bis 6.2.5.2). "
        "404 when the stream is unknown or offline."
    ),
    media_type=PLAYLIST_TYPE,
)
async def live_playlist(
    request: Request[Any, Any, Any],
    live: LiveDep,
    stream_id: FromPath[str],
    msn: Annotated[str | None, QueryParameter(name="_HLS_msn", required=False)] = None,
    part: Annotated[str | None, QueryParameter(name="_HLS_part", required=False)] = None,
) -> Response[str]:
    session = _current(live, stream_id)
    client = request.client.host if request.client else ""
    live.viewers.seen(stream_id, viewer_key(client, request.headers.get("user-agent", "")))
    try:
        directives = parse_directives(msn, part)
    except ReloadError as exc:
        raise BadPlaylistRequest(str(exc)) from exc
    deadline = time.monotonic() + BLOCK_TARGETS * session.target_duration
    while True:
        decision = verdict(session, directives)
        if decision is Verdict.READY:
            break
        if decision is Verdict.TOO_FAR:
            raise BadPlaylistRequest(
                f"_HLS_msn={directives.msn} _HLS_part={directives.part} is too far ahead of "
                f"the live edge (last segment {session.last_sequence})"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not await live.state.wait_change(stream_id, remaining):
            raise PlaylistNotReady(
                "the requested part did not arrive in time", headers={"Retry-After": "1"}
            )
        latest = live.state.playlist(stream_id)
        if latest is None or latest.session_id != session.session_id:
            session = _current(live, stream_id)  # a new broadcast: answer with it
            break
    cache = f"public, max-age={session.target_duration}" if directives.blocking else NO_CACHE
    return Response(
        live.render(session), media_type=PLAYLIST_TYPE, headers={"Cache-Control": cache}
    )


async def _wait_for_hinted_part(
    live: LiveService, stream_id: str, session_id: str, name: str
) -> None:
    """Hold a request for a part that is hinted or about to be (§6.2.6) until it exists."""
    wanted = keys.parse_part_name(name)
    session = live.state.session(session_id)
    if wanted is None or session is None or session.ended:
        return
    sequence, index = wanted
    deadline = time.monotonic() + BLOCK_TARGETS * session.target_duration
    while not session.ended and index not in session.parts.get(sequence, {}):
        last = session.last_sequence
        if not last + 1 <= sequence <= last + 2 or sequence in session.segments:
            return  # not a part that is coming: let the store answer
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not await live.state.wait_change(stream_id, remaining):
            return


@get(
    "/{stream_id:str}/thumbnail.jpg",
    summary="The latest thumbnail of a live stream (JPEG)",
    description="Renewed by ingest every few seconds while live; 404 before the first one.",
    media_type="image/jpeg",
)
async def live_thumbnail(live: LiveDep, stream_id: FromPath[str]) -> Response[bytes]:
    key = keys.thumbnail_key(stream_id)
    if key is None:
        raise LiveMediaNotFound(f"no live stream {stream_id[:64]!r}")
    try:
        data = await live.store.read(key)  # not the media cache: the object changes
    except ObjectNotFound as exc:
        raise LiveMediaNotFound(f"stream {stream_id} has no thumbnail yet") from exc
    except StoreError as exc:
        raise UnavailableError("the media store is unavailable; try again") from exc
    return Response(
        data,
        media_type="image/jpeg",
        headers={"Cache-Control": f"public, max-age={THUMBNAIL_MAX_AGE_S}"},
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=`` range (RFC 9110 §14.1.2) as (first, last); None = whole body."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # absent, another unit, or several ranges: serve the whole object
    first_text, _, last_text = header[6:].strip().partition("-")
    try:
        if not first_text:
            length = int(last_text)
            first, last = max(0, size - length), size - 1
        else:
            first = int(first_text)
            last = min(int(last_text), size - 1) if last_text else size - 1
    except ValueError:
        return None
    if first > last or first >= size:
        raise RangeNotSatisfiable(
            f"range {header[6:40]} is outside the {size}-byte object",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return first, last


async def _check_recording_kept(
    request: Request[Any, Any, Any], live: LiveService, stream_id: str, session_id: str
) -> None:
    session = live.state.session(session_id)
    if session is not None and not session.ended:
        return  # on air: no recording yet, and no lookup on the live hot path
    gone = request.app.state.get(GONE_STATE_KEY)
    if isinstance(gone, DeletedVideos) and await gone.recording_deleted(stream_id, session_id):
        raise LiveMediaNotFound(f"the recording of broadcast {session_id} was deleted")


@get(
    "/{stream_id:str}/{session_id:str}/{name:str}",
    summary="Init segment, segment or part of a live stream; an ended one's VOD playlist",
    media_type=MEDIA_TYPE,
)
async def live_media(
    live: LiveDep,
    request: Request[Any, Any, Any],
    stream_id: FromPath[str],
    session_id: FromPath[str],
    name: FromPath[str],
) -> Response[bytes]:
    key = keys.object_key(stream_id, session_id, name)
    if key is None:
        raise LiveMediaNotFound(f"no live media {name[:64]!r}")
    await _check_recording_kept(request, live, stream_id, session_id)
    await _wait_for_hinted_part(live, stream_id, session_id, name)
    try:
        data = await live.read(key)
    except ObjectNotFound as exc:
        raise LiveMediaNotFound(f"no live media {session_id}/{name}") from exc
    except StoreError as exc:
        raise UnavailableError("the media store is unavailable; try again") from exc
    headers = {"Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    media_type = PLAYLIST_TYPE if name == keys.RECORDING_PLAYLIST else MEDIA_TYPE
    selected = _byte_range(request.headers.get("range"), len(data))
    if selected is None:
        return Response(data, media_type=media_type, headers=headers)
    first, last = selected
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return Response(data[first : last + 1], media_type=media_type, headers=headers, status_code=206)


live_router = Router(
    path="/live",
    route_handlers=[live_playlist, live_thumbnail, live_media],
    dependencies={"live": Provide(provide_live, sync_to_thread=False)},
    tags=["live"],
)
