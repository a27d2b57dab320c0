"""Deleted videos leave the store: ``video.deleted`` → the video's media removed.

Why here: the transcoder owns a video's media (``vod/{video_id}/``: ladder, poster,
thumbnails, sprite — and, for a recording, the master and poster ingest wrote there
first), and it is handed every source to transcode (``transcode.requested``,
``stream.recorded``), so it is also the one that can finish off a transcode that ends
after the delete. What goes:

- ``vod/{video_id}/``;
- an upload's ``uploads/{upload_id}/`` (the assembled source and any tail part);
- a recording's broadcast: ``live/{stream_id}/{session_id}/`` (init, segments,
  ``recording.m3u8``) and ``recordings/{stream_id}/{session_id}.mp4``.

The source ids travel in the event (the gateway copies them from its catalog row); the
job row keeps the ``source_key`` its request named, for a delete whose event does not
know it; a request delivered after the delete brings its own (:func:`media_of_request`).

Order, so redelivery and crashes are harmless:

1. the job row goes ``deleted`` (:func:`transcoder.jobs.mark_deleted`) — a transcode
   still running anywhere then publishes nothing when it ends, and removes what it
   wrote instead (``TranscodeWorker``); a later request for the video does the same;
   one running in this process is stopped at once (no CPU spent on a deleted video);
2. the deletions, each idempotent (a missing key is no error, S3 semantics);
3. the processed-event claim (:func:`events.consumer.run_once`, ``common.idempotency``).

A crash mid-way leaves the message unacknowledged: its redelivery repeats steps 1 and 2, which
removes what is left. A redelivery after 3 finds the claim and does nothing at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import is_claimed
from common.logs import get_logger
from common.store import ObjectStore
from events.catalog import VideoDeleted
from events.consumer import run_once
from events.errors import PermanentError
from transcoder import jobs
from transcoder.layout import video_prefix

__all__ = [
    "CONSUMER",
    "MediaSet",
    "media_of_deleted",
    "media_of_request",
    "purge",
    "remove_video",
]

log = get_logger(__name__)

CONSUMER: Final = "transcoder-deletions"
# Ids become key segments. Anything else is skipped rather than built into a prefix:
# an empty or odd id must never widen ``live/{id}/`` into ``live/``.
_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A big ladder on S3 is thousands of deletes: tell JetStream we are alive this often.
HEARTBEAT_S: Final = 10.0

Heartbeat = Callable[[], Awaitable[None]]


def _safe(value: str) -> bool:
    return _ID.fullmatch(value) is not None


# Other components' layouts, mirrored (components never import each other;
# tests/unit/test_transcoder_deletion.py checks these agree with theirs).
def upload_prefix(upload_id: str) -> str:
    """``uploader/layout.py``: everything of one upload."""
    return f"uploads/{upload_id}/"


def session_prefix(stream_id: str, session_id: str) -> str:
    """``ingest/packager/keys.py``: one broadcast's live media."""
    return f"live/{stream_id}/{session_id}/"


def recording_key(stream_id: str, session_id: str) -> str:
    """``ingest/packager/keys.py``: the broadcast joined into one file."""
    return f"recordings/{stream_id}/{session_id}.mp4"


@dataclass(frozen=True, slots=True)
class MediaSet:
    """What to remove: whole prefixes and single keys."""

    prefixes: tuple[str, ...]
    keys: tuple[str, ...] = ()


def _recording_media(stream_id: str, session_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not (_safe(stream_id) and _safe(session_id)):
        return (), ()
    return (session_prefix(stream_id, session_id),), (recording_key(stream_id, session_id),)


def media_of_deleted(event: VideoDeleted, source_key: str = "") -> MediaSet:
    """The event's media, and ``source_key``: what the job was asked to transcode (the
    event may not know the upload: a delete that beat the catalog's update)."""
    prefixes = [video_prefix(event.video_id)]
    if _safe(event.upload_id):
        prefixes.append(upload_prefix(event.upload_id))
    recording_prefixes, recording_keys = _recording_media(event.stream_id, event.session_id)
    sources = (source_key,) if source_key else ()
    keys = tuple(dict.fromkeys(recording_keys + sources))
    return MediaSet((*prefixes, *recording_prefixes), keys)


def media_of_request(
    video_id: str, source_key: str, *, stream_id: str = "", session_id: str = ""
) -> MediaSet:
    """A request that arrives, or a job that ends, after its video was deleted."""
    prefixes, keys = _recording_media(stream_id, session_id)
    sources = (source_key,) if source_key else ()
    return MediaSet((video_prefix(video_id), *prefixes), tuple(dict.fromkeys(keys + sources)))


async def purge(store: ObjectStore, media: MediaSet, *, heartbeat: Heartbeat | None = None) -> int:
    """Delete ``media``; how many objects went. Idempotent: a rerun deletes what is left."""
    removed = 0
    last_beat = time.monotonic()
    for prefix in media.prefixes:
        removed += await store.delete_prefix(prefix)
        if heartbeat is not None and time.monotonic() - last_beat > HEARTBEAT_S:
            await heartbeat()
            last_beat = time.monotonic()
    for key in media.keys:
        if await store.exists(key):
            await store.delete(key)
            removed += 1
    return removed


async def _already_removed(sessions: async_sessionmaker[AsyncSession], event_id: str) -> bool:
    async with sessions() as session:
        return await is_claimed(session, CONSUMER, event_id)


async def remove_video(
    sessions: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    event: VideoDeleted,
    *,
    heartbeat: Heartbeat | None = None,
    stop_job: Callable[[str], Awaitable[None]] | None = None,
) -> bool:
    """Handle one ``video.deleted`` (see the module doc); False for a repeat.

    ``stop_job(video_id)`` ends this process's running transcode of the video, once the
    row says deleted (so the job takes its end for what it is, not for a failure).

    A video id that cannot name a key is poison (:class:`PermanentError`): no retry.
    """
    if not _safe(event.video_id):
        raise PermanentError(f"video id {event.video_id[:140]!r} is not a safe id")
    if await _already_removed(sessions, event.event_id):
        log.debug("deletion already done", video_id=event.video_id, event_id=event.event_id)
        return False
    source = await jobs.mark_deleted(sessions, video_id=event.video_id, event_id=event.event_id)
    if stop_job is not None:
        await stop_job(event.video_id)
    removed = await purge(store, media_of_deleted(event, source), heartbeat=heartbeat)

    async def nothing(_: AsyncSession) -> None:
        return None  # the effect (the deletions) is done and idempotent: only the claim

    first = await run_once(sessions, CONSUMER, event, nothing)
    log.info("video media removed", video_id=event.video_id, objects=removed, first=first)
    return first
