"""Deleted videos are not served: the check delivery makes before a video's media.

The catalog projection says which videos are deleted (``video.deleted`` is terminal
there). Asking it on every segment request would add a database round trip per
segment per viewer, so answers are kept in memory, per process:

- *deleted* is kept for good (terminal; a bounded LRU);
- *not deleted* (an unknown video included: ingest writes a recording's master before
  the catalog knows it) is kept :data:`RECHECK_S` — after a delete, a gateway that had
  just checked serves the video's media at most that long more;
- concurrent misses for one video share one query.

What left the gateway earlier may still be served by a CDN or a browser cache for its
``max-age`` (segments, init and images are ``immutable`` for a year): accepted, the
media behind it is removed from the store (``transcoder.deletion``), and a deleted
video's playlists stop naming anything within a minute.

When the database does not answer, media is served (the check fails open, logged):
playback of everything else matters more than a late few seconds of a deleted video.

A recording is also served under ``/live/{stream_id}/{session_id}/``: its video id is
derived from the broadcast (:func:`events.catalog.live.recording_video_id`, as ingest derives it).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from events.catalog.live import recording_video_id
from gateway.projections import queries

__all__ = ["GONE_STATE_KEY", "RECHECK_S", "DeletedVideos"]

log = get_logger(__name__)

GONE_STATE_KEY: Final = "vod_deleted_videos"
RECHECK_S: Final = 2.0
MAX_DELETED: Final = 100_000
MAX_LIVE: Final = 100_000


class DeletedVideos:
    """Per-process answers to "is this video deleted?" (see the module doc)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, recheck_s: float = RECHECK_S
    ) -> None:
        self._sessions = sessions
        self.recheck_s = recheck_s
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._live: OrderedDict[str, float] = OrderedDict()  # video id → checked at
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        self.queries = 0

    async def is_deleted(self, video_id: str) -> bool:
        if video_id in self._deleted:
            self._deleted.move_to_end(video_id)
            return True
        checked = self._live.get(video_id)
        if checked is not None and time.monotonic() - checked < self.recheck_s:
            return False
        inflight = self._inflight.get(video_id)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[video_id] = future
        try:
            deleted = await self._ask(video_id)
            future.set_result(deleted)
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._inflight[video_id]
        self._remember(video_id, deleted)
        return deleted

    async def recording_deleted(self, stream_id: str, session_id: str) -> bool:
        return await self.is_deleted(recording_video_id(stream_id, session_id))

    async def _ask(self, video_id: str) -> bool:
        self.queries += 1
        try:
            async with self._sessions() as session:
                return await queries.video_deleted(session, video_id)
        except Exception as exc:  # fail open, see the module doc
            log.warning("deleted-video check failed; serving", video_id=video_id, error=repr(exc))
            return False

    def _remember(self, video_id: str, deleted: bool) -> None:
        if deleted:
            self._live.pop(video_id, None)
            self._deleted[video_id] = None
            if len(self._deleted) > MAX_DELETED:
                self._deleted.popitem(last=False)
            return
        self._live[video_id] = time.monotonic()
        self._live.move_to_end(video_id)
        if len(self._live) > MAX_LIVE:
            self._live.popitem(last=False)
