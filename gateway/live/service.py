"""The live delivery service of one gateway process: state, feed, store, media cache.

Errors (all ``application/problem+json`` through ``gateway.errors``)::

    ApiError
     ├── LiveStreamNotFound   404  never live here (within the event history)
     ├── LiveStreamOffline    404  was live, the broadcast has ended
     ├── BadPlaylistRequest   400  bad or too-far-ahead _HLS_msn/_HLS_part (§6.2.5.2)
     ├── PlaylistNotReady     503  blocked for more than three target durations
     ├── LiveMediaNotFound    404  no such init/segment/part
     └── RangeNotSatisfiable  416  a Range outside the object
"""

from __future__ import annotations

from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from common.store import ObjectStore
from gateway.errors import ApiError
from gateway.live.cache import MediaCache
from gateway.live.feed import LiveFeed
from gateway.live.playlist import render
from gateway.live.state import LiveState, SessionPlaylist
from gateway.live.viewers import ViewerTracker

# Rendered playlists kept (one per live session; dropped wholesale past this).
MAX_RENDERED = 10_000


class LiveStreamNotFound(ApiError):  # noqa: N818 - reads as a status at call sites
    status_code = HTTP_404_NOT_FOUND
    slug = "live-stream-not-found"
    title = "No such live stream"


class LiveStreamOffline(ApiError):  # noqa: N818
    status_code = HTTP_404_NOT_FOUND
    slug = "live-stream-offline"
    title = "Stream offline"


class BadPlaylistRequest(ApiError):  # noqa: N818
    status_code = HTTP_400_BAD_REQUEST
    slug = "bad-playlist-request"
    title = "Bad playlist request"


class PlaylistNotReady(ApiError):  # noqa: N818
    status_code = HTTP_503_SERVICE_UNAVAILABLE
    slug = "playlist-not-ready"
    title = "Playlist not ready"


class LiveMediaNotFound(ApiError):  # noqa: N818
    status_code = HTTP_404_NOT_FOUND
    slug = "live-media-not-found"
    title = "No such live media"


class RangeNotSatisfiable(ApiError):  # noqa: N818
    status_code = HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE
    slug = "range-not-satisfiable"
    title = "Range not satisfiable"


class LiveService:
    """What the live routes use; ``app.state.live`` (see ``gateway.live.live_lifespan``)."""

    def __init__(
        self,
        state: LiveState,
        store: ObjectStore,
        *,
        feed: LiveFeed | None = None,
        cache: MediaCache | None = None,
    ) -> None:
        self.state = state
        self.store = store
        self.feed = feed
        self.cache = cache or MediaCache()
        self.viewers = ViewerTracker()
        self._rendered: dict[str, tuple[int, str]] = {}

    async def read(self, key: str) -> bytes:
        """A media object, through the cache (live media never changes)."""
        return await self.cache.fetch(key, self.store.read)

    def render(self, session: SessionPlaylist) -> str:
        """The playlist text, rendered once per change however many viewers ask."""
        cached = self._rendered.get(session.session_id)
        if cached is not None and cached[0] == session.version:
            return cached[1]
        text = render(session)
        if len(self._rendered) >= MAX_RENDERED:
            self._rendered.clear()
        self._rendered[session.session_id] = (session.version, text)
        return text
