"""The catalog's fold: events in, rows out. Pure (no I/O), so it is unit-tested alone.

The projector loads the rows a batch touches into a :class:`CatalogState`, folds the
batch's events into it with :func:`apply_event`, and writes back the rows marked dirty.

Rules that make "drop it and replay it" give the same rows
---------------------------------------------------------
Each stream is read in log order, but the four streams are read concurrently, so the
interleaving *between* streams differs from one run to the next (and between a live
run and a rebuild). A row's final value must not depend on it:

- a column is written by the events of one stream only (``models.py`` groups them), or
- every writer writes the same value, and where a writer might not know it, the
  owner overwrites and the others only fill a gap (``user_id``, ``origin``,
  ``stream_id``): (owner, other) and (other, owner) end on the owner's value;
- derived columns (``title``, ``duration_s``, ``sort_at``) are recomputed from the
  columns above, never from arrival order;
- ``deleted`` is terminal: a source event arriving after the delete (another stream)
  fills its columns but cannot revive the video.

Duplicates: a redelivery never reaches here (the checkpoint skips it); a republished
copy beyond JetStream's duplicate window does, so updates of mutable fields are
guarded by the event time of the last one applied (``meta_at``, ``media_at``), and the
rest is idempotent. The guards compare producers' clocks, so events of one kind from
hosts whose clocks disagree by more than their spacing could be dropped; one producer
writes each kind here (gateway: channel meta; ingest: lifecycle; transcoder: media) —
except a recording's ``video.published``: ingest's comes first (the live segments,
playable at once), the transcoder's ladder seconds to minutes later replaces it, and a
late copy of ingest's is the older one and loses. The video stays ``ready`` throughout:
a transcode of a playable recording neither hides it (progress) nor fails it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from events.catalog import (
    ChannelUpdated,
    Event,
    StreamEnded,
    StreamRecorded,
    StreamStarted,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    UploadCompleted,
    UserRegistered,
    VideoDeleted,
    VideoPublished,
)

__all__ = [
    "CATALOG_EVENTS",
    "EPOCH",
    "CatalogState",
    "ChannelRow",
    "Keys",
    "UserRow",
    "VideoRow",
    "apply_event",
    "keys_of",
]

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

PROCESSING, READY, FAILED, DELETED = "processing", "ready", "failed", "deleted"

CATALOG_EVENTS: Final[tuple[type[Event], ...]] = (
    UserRegistered,
    ChannelUpdated,
    StreamStarted,
    StreamEnded,
    StreamRecorded,
    UploadCompleted,
    TranscodeProgress,
    TranscodeCompleted,
    TranscodeFailed,
    VideoPublished,
    VideoDeleted,
)


class UserRow(msgspec.Struct, kw_only=True):
    user_id: str
    username: str
    stream_id: str
    registered_at: dt.datetime


class ChannelRow(msgspec.Struct, kw_only=True):
    stream_id: str
    user_id: str | None = None
    username: str | None = None
    title: str = ""
    description: str = ""
    meta_at: dt.datetime | None = None
    live: bool = False
    session_id: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    end_reason: str | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    poster_video_id: str | None = None
    poster_key: str | None = None
    poster_at: dt.datetime | None = None


class VideoRow(msgspec.Struct, kw_only=True):
    video_id: str
    user_id: str | None = None
    origin: str | None = None
    upload_id: str | None = None
    stream_id: str | None = None
    session_id: str | None = None
    src_title: str | None = None
    src_description: str | None = None
    src_duration_s: float | None = None
    created_at: dt.datetime | None = None
    status: str = PROCESSING
    progress: float = 0.0
    stage: str | None = None
    error: str | None = None
    master_key: str | None = None
    poster_key: str | None = None
    media_duration_s: float | None = None
    media_at: dt.datetime | None = None
    pub_title: str | None = None
    pub_description: str | None = None
    width: int | None = None
    height: int | None = None
    published_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    title: str = ""
    description: str = ""
    duration_s: float = 0.0
    sort_at: dt.datetime = EPOCH


@dataclass
class Keys:
    """Primary keys a batch touches, so the projector loads exactly those rows."""

    user_ids: set[str] = field(default_factory=set)
    stream_ids: set[str] = field(default_factory=set)
    video_ids: set[str] = field(default_factory=set)


def keys_of(events: Iterable[Event]) -> Keys:
    keys = Keys()
    for event in events:
        if isinstance(event, UserRegistered):
            keys.user_ids.add(event.user_id)
            keys.stream_ids.add(event.stream_id)
        elif isinstance(event, ChannelUpdated | StreamStarted | StreamEnded):
            keys.stream_ids.add(event.stream_id)
        elif isinstance(
            event,
            StreamRecorded
            | UploadCompleted
            | TranscodeProgress
            | TranscodeCompleted
            | TranscodeFailed
            | VideoPublished
            | VideoDeleted,
        ):
            keys.video_ids.add(event.video_id)
            if isinstance(event, VideoPublished) and event.stream_id:
                keys.stream_ids.add(event.stream_id)
    return keys


@dataclass
class CatalogState:
    """The rows one batch reads and writes; ``dirty_*`` are the ones to write back."""

    users: dict[str, UserRow] = field(default_factory=dict)
    channels: dict[str, ChannelRow] = field(default_factory=dict)
    videos: dict[str, VideoRow] = field(default_factory=dict)
    dirty_users: set[str] = field(default_factory=set)
    dirty_channels: set[str] = field(default_factory=set)
    dirty_videos: set[str] = field(default_factory=set)

    def channel(self, stream_id: str) -> ChannelRow:
        row = self.channels.get(stream_id)
        if row is None:
            row = self.channels[stream_id] = ChannelRow(stream_id=stream_id)
        self.dirty_channels.add(stream_id)
        return row

    def video(self, video_id: str) -> VideoRow:
        row = self.videos.get(video_id)
        if row is None:
            row = self.videos[video_id] = VideoRow(video_id=video_id)
        self.dirty_videos.add(video_id)
        return row

    def dirty_rows(self) -> tuple[list[UserRow], list[ChannelRow], list[VideoRow]]:
        return (
            [self.users[k] for k in sorted(self.dirty_users)],
            [self.channels[k] for k in sorted(self.dirty_channels)],
            [self.videos[k] for k in sorted(self.dirty_videos)],
        )


def row_dict(row: msgspec.Struct) -> dict[str, Any]:
    return msgspec.structs.asdict(row)


# --- accounts ---------------------------------------------------------------------


def _user_registered(state: CatalogState, e: UserRegistered) -> None:
    old = state.users.get(e.user_id)
    state.users[e.user_id] = UserRow(
        user_id=e.user_id,
        username=e.username,
        stream_id=e.stream_id,
        registered_at=old.registered_at if old is not None else e.occurred_at,
    )
    state.dirty_users.add(e.user_id)
    channel = state.channel(e.stream_id)
    channel.user_id = e.user_id  # ACCOUNTS owns user_id; STREAMS only fills it
    channel.username = e.username


def _channel_updated(state: CatalogState, e: ChannelUpdated) -> None:
    channel = state.channel(e.stream_id)
    channel.user_id = e.user_id
    if channel.meta_at is not None and e.occurred_at < channel.meta_at:
        return  # a late copy of an older update
    channel.title, channel.description, channel.meta_at = e.title, e.description, e.occurred_at


# --- live lifecycle ---------------------------------------------------------------


def _stream_started(state: CatalogState, e: StreamStarted) -> None:
    channel = state.channel(e.stream_id)
    channel.user_id = channel.user_id or e.user_id
    same_session = channel.session_id == e.session_id
    if same_session and channel.ended_at is not None:
        return  # a copy of the start of a broadcast that has already ended
    if not same_session and channel.started_at is not None and e.occurred_at < channel.started_at:
        return  # a copy of an earlier broadcast's start
    if not same_session or channel.started_at is None:
        # A publisher reconnecting into the same broadcast keeps its start time.
        channel.started_at = e.occurred_at
    channel.live = True
    channel.session_id = e.session_id
    channel.ended_at = channel.end_reason = None
    channel.video_codec = e.video_codec
    channel.audio_codec = e.audio_codec or None
    channel.width, channel.height, channel.fps = e.width, e.height, e.fps


def _stream_ended(state: CatalogState, e: StreamEnded) -> None:
    channel = state.channels.get(e.stream_id)
    if channel is None or channel.session_id != e.session_id or not channel.live:
        return  # another broadcast's end, or already ended
    state.dirty_channels.add(e.stream_id)
    channel.live = False
    channel.ended_at, channel.end_reason = e.occurred_at, e.reason


# --- sources of videos ------------------------------------------------------------


def _source(row: VideoRow, *, user_id: str, origin: str, created_at: dt.datetime) -> None:
    # The source event owns these: it overwrites what a MEDIA event may have filled.
    row.user_id, row.origin = user_id, origin
    row.created_at = created_at if row.created_at is None else min(row.created_at, created_at)


def _upload_completed(state: CatalogState, e: UploadCompleted) -> None:
    row = state.video(e.video_id)
    _source(row, user_id=e.user_id, origin="upload", created_at=e.occurred_at)
    row.upload_id = e.upload_id
    row.src_title = e.title or e.filename
    row.src_description = e.description
    row.src_duration_s = e.probe.duration_s


def _stream_recorded(state: CatalogState, e: StreamRecorded) -> None:
    row = state.video(e.video_id)
    _source(row, user_id=e.user_id, origin="recording", created_at=e.occurred_at)
    row.stream_id, row.session_id = e.stream_id, e.session_id
    row.src_title = e.title
    row.src_description = e.description
    row.src_duration_s = e.duration_s


# --- transcoding and the library --------------------------------------------------


def _stale(row: VideoRow, at: dt.datetime) -> bool:
    return row.media_at is not None and at < row.media_at


def _transcode_progress(state: CatalogState, e: TranscodeProgress) -> None:
    row = state.video(e.video_id)
    if row.status in (READY, DELETED) or _stale(row, e.occurred_at):
        return
    if row.status == FAILED:
        row.error = None  # a retry is under way
    row.status, row.stage, row.media_at = PROCESSING, e.stage, e.occurred_at
    row.progress = min(max(e.percent, 0.0), 100.0)


def _transcode_completed(state: CatalogState, e: TranscodeCompleted) -> None:
    row = state.video(e.video_id)
    if row.status == DELETED or _stale(row, e.occurred_at):
        return
    row.user_id = row.user_id or e.user_id
    if row.status == FAILED:
        row.status, row.error = PROCESSING, None
    row.progress, row.media_at = 100.0, e.occurred_at
    row.master_key, row.poster_key = e.master_key, e.poster_key
    if e.duration_s > 0:
        row.media_duration_s = e.duration_s


def _transcode_failed(state: CatalogState, e: TranscodeFailed) -> None:
    row = state.video(e.video_id)
    row.user_id = row.user_id or e.user_id
    if row.status in (READY, DELETED) or _stale(row, e.occurred_at):
        return  # a failed re-transcode leaves the published video playable
    row.error, row.media_at = e.reason, e.occurred_at
    if e.permanent:
        row.status = FAILED


def _video_published(state: CatalogState, e: VideoPublished) -> None:
    row = state.video(e.video_id)
    row.user_id = row.user_id or e.user_id
    row.origin = row.origin or e.origin
    row.stream_id = row.stream_id or e.stream_id or None
    if row.status == DELETED or _stale(row, e.occurred_at):
        return
    row.status, row.progress, row.error, row.media_at = READY, 100.0, None, e.occurred_at
    row.master_key, row.poster_key = e.master_key, e.poster_key
    row.media_duration_s = e.duration_s
    row.pub_title, row.pub_description = e.title, e.description
    row.width, row.height = e.width or None, e.height or None
    if row.published_at is None:
        row.published_at = e.occurred_at  # a re-publish keeps its place in the listing
    if e.stream_id and e.poster_key:
        channel = state.channel(e.stream_id)
        if channel.poster_at is None or e.occurred_at >= channel.poster_at:
            channel.poster_video_id, channel.poster_key = e.video_id, e.poster_key
            channel.poster_at = e.occurred_at


def _video_deleted(state: CatalogState, e: VideoDeleted) -> None:
    row = state.video(e.video_id)
    row.user_id = row.user_id or e.user_id
    if row.status != DELETED:
        row.status, row.deleted_at = DELETED, e.occurred_at
    channel = state.channels.get(row.stream_id or "")
    if channel is not None and channel.poster_video_id == e.video_id:
        # poster_at stays: an older recording's late copy must not come back.
        channel.poster_video_id = channel.poster_key = None
        state.dirty_channels.add(channel.stream_id)


def _derive(row: VideoRow) -> None:
    """Listing columns from the stored ones only (see the module docstring)."""
    row.title = row.pub_title if row.pub_title is not None else (row.src_title or "")
    row.description = (
        row.pub_description if row.pub_description is not None else (row.src_description or "")
    )
    row.duration_s = row.media_duration_s or row.src_duration_s or 0.0
    row.sort_at = row.published_at or row.created_at or EPOCH


_HANDLERS: Final[dict[type[Event], Any]] = {
    UserRegistered: _user_registered,
    ChannelUpdated: _channel_updated,
    StreamStarted: _stream_started,
    StreamEnded: _stream_ended,
    StreamRecorded: _stream_recorded,
    UploadCompleted: _upload_completed,
    TranscodeProgress: _transcode_progress,
    TranscodeCompleted: _transcode_completed,
    TranscodeFailed: _transcode_failed,
    VideoPublished: _video_published,
    VideoDeleted: _video_deleted,
}


def apply_event(state: CatalogState, event: Event) -> bool:
    """Fold one event into ``state``; False for an event type the catalog ignores."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return False
    handler(state, event)
    video_id = getattr(event, "video_id", None)
    if isinstance(video_id, str) and video_id in state.videos:
        _derive(state.videos[video_id])
    return True
