"""A recording published twice (ingest's live segments, then the ladder) is one video.

Every interleaving of the two streams' events (STREAMS: ``stream.recorded``; MEDIA:
the rest, in log order) ends on the same row: ready from the first ``video.published``,
the ladder's master and poster last, the listing position of the first; a transcode's
progress or failure never hides the playable recording; a late copy of ingest's
``video.published`` changes nothing.
"""

from __future__ import annotations

import datetime as dt
import itertools

import msgspec
import pytest

from events.catalog import (
    Event,
    StreamRecorded,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    VideoPublished,
)
from gateway.projections.reducer import CatalogState, VideoRow, apply_event

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
VIDEO, STREAM, USER = "v-rec", "s-1", "u-1"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


RECORDED = StreamRecorded(
    occurred_at=at(0),
    stream_id=STREAM,
    session_id="sess",
    user_id=USER,
    video_id=VIDEO,
    object_key="recordings/s-1/sess.mp4",
    duration_s=12.0,
    byte_size=1000,
    title="Live title",
    description="Live description",
    playlist_key="live/s-1/sess/recording.m3u8",
)


def published(seconds: float, poster: str) -> VideoPublished:
    return VideoPublished(
        occurred_at=at(seconds),
        video_id=VIDEO,
        user_id=USER,
        title="Live title",
        description="Live description",
        duration_s=12.0,
        master_key=f"vod/{VIDEO}/master.m3u8",
        poster_key=poster,
        width=320,
        height=240,
        origin="recording",
        stream_id=STREAM,
    )


AT_ONCE = published(0.1, f"vod/{VIDEO}/live-poster.jpg")
MEDIA: list[Event] = [
    AT_ONCE,
    TranscodeProgress(occurred_at=at(2), video_id=VIDEO, stage="encoding", percent=40.0),
    TranscodeFailed(occurred_at=at(3), video_id=VIDEO, user_id=USER, reason="child killed"),
    TranscodeCompleted(
        occurred_at=at(9),
        video_id=VIDEO,
        user_id=USER,
        master_key=f"vod/{VIDEO}/master.m3u8",
        renditions=[],
        poster_key=f"vod/{VIDEO}/poster.jpg",
        duration_s=12.0,
    ),
    published(9.1, f"vod/{VIDEO}/poster.jpg"),
]


def fold(events: list[Event]) -> VideoRow:
    state = CatalogState()
    for event in events:
        apply_event(state, event)
    (row,) = state.videos.values()
    return row


def test_ready_at_once_and_still_ready_while_the_ladder_is_made() -> None:
    row = fold([RECORDED, AT_ONCE, *MEDIA[1:3]])
    assert (row.status, row.error) == ("ready", None)
    assert (row.title, row.description) == ("Live title", "Live description")
    assert row.poster_key == f"vod/{VIDEO}/live-poster.jpg"
    assert row.published_at == at(0.1)


def test_every_interleaving_ends_on_the_ladder_as_one_video() -> None:
    rows = set()
    for position in range(len(MEDIA) + 1):
        events = [*MEDIA[:position], RECORDED, *MEDIA[position:]]
        row = fold([*events, AT_ONCE])  # and a late copy of ingest's publish
        rows.add(msgspec.json.encode(row))
    (only,) = rows
    row = msgspec.json.decode(only, type=VideoRow)
    assert row.status == "ready"
    assert row.poster_key == f"vod/{VIDEO}/poster.jpg"
    assert row.published_at == at(0.1)  # an update keeps the video's place
    assert (row.origin, row.stream_id, row.session_id) == ("recording", STREAM, "sess")


def test_the_channel_poster_follows_the_newest_publish() -> None:
    for order in itertools.permutations([AT_ONCE, MEDIA[-1]]):
        state = CatalogState()
        for event in order:
            apply_event(state, event)
        assert state.channels[STREAM].poster_key == f"vod/{VIDEO}/poster.jpg"
