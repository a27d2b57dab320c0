"""The catalog fold, event by event (no database, no NATS)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pytest

from events.catalog import (
    ChannelUpdated,
    Event,
    StatsViewers,
    StreamEnded,
    StreamStarted,
    TranscodeFailed,
    TranscodeProgress,
    VideoDeleted,
)
from gateway.projections.reducer import EPOCH, CatalogState, apply_event, keys_of
from tests.unit.test_projection_scenario import PAGED_VIDEOS, _Clock, _published, _upload, scenario

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _state(events: Iterable[Event]) -> CatalogState:
    state = CatalogState()
    for event in events:
        apply_event(state, event)
    return state


def test_the_scenario_folds_into_the_expected_catalog() -> None:
    events = scenario(T0)
    state = _state(events)

    assert {u.username for u in state.users.values()} == {"alice", "bob", "carol"}
    alice = state.channels["s-alice"]
    assert (alice.user_id, alice.username, alice.title, alice.description) == (
        "u-alice",
        "alice",
        "Evening show",
        "live!",
    )
    assert alice.live
    assert alice.session_id == "sess-a2"
    assert alice.ended_at is None
    assert (alice.width, alice.height, alice.fps, alice.video_codec) == (
        1920,
        1080,
        60.0,
        "avc1.64001f",
    )
    start_a2 = next(e for e in events if isinstance(e, StreamStarted) and e.session_id == "sess-a2")
    assert alice.started_at == start_a2.occurred_at
    assert (alice.poster_video_id, alice.poster_key) == ("v-rec-1", "vod/v-rec-1/poster.jpg")
    assert state.channels["s-bob"].live
    assert state.channels["s-bob"].audio_codec is None
    assert not state.channels["s-carol"].live

    videos = state.videos
    cats = videos["v-up-1"]
    assert (cats.status, cats.progress, cats.title, cats.description) == (
        "ready",
        100.0,
        "Cats (final)",
        "published Cats (final)",
    )
    assert cats.duration_s == 12.5
    assert cats.origin == "upload"
    assert cats.upload_id == "up-v-up-1"
    assert cats.published_at is not None
    assert cats.sort_at == cats.published_at
    assert cats.created_at is not None
    assert cats.created_at < cats.published_at
    assert (videos["v-up-2"].status, videos["v-up-2"].error) == ("failed", "not decodable")
    assert videos["v-up-3"].status == "deleted"
    assert videos["v-up-3"].deleted_at is not None
    soon = videos["v-up-4"]
    assert (soon.status, soon.progress, soon.title, soon.stage) == (
        "processing",
        30.0,
        "Soon",
        "encoding",
    )
    assert soon.sort_at == soon.created_at
    rec = videos["v-rec-1"]
    assert (rec.origin, rec.stream_id, rec.session_id, rec.status) == (
        "recording",
        "s-alice",
        "sess-a1",
        "ready",
    )
    assert sum(v.status == "ready" for v in videos.values()) == PAGED_VIDEOS + 2


def test_a_reconnect_into_the_same_broadcast_keeps_its_start() -> None:
    clock = _Clock(T0)
    first = StreamStarted(
        occurred_at=clock.tick(), stream_id="s", session_id="x", user_id="u", video_codec="avc1"
    )
    again = StreamStarted(
        occurred_at=clock.tick(), stream_id="s", session_id="x", user_id="u", video_codec="avc1"
    )
    state = _state([first, again])
    assert state.channels["s"].started_at == first.occurred_at
    assert state.channels["s"].live


def test_the_end_of_another_broadcast_is_ignored() -> None:
    clock = _Clock(T0)
    state = _state(
        [
            StreamStarted(
                occurred_at=clock.tick(),
                stream_id="s",
                session_id="new",
                user_id="u",
                video_codec="a",
            ),
            StreamEnded(
                occurred_at=clock.tick(), stream_id="s", session_id="old", reason="timeout"
            ),
        ]
    )
    live_before = state.channels["s"].live
    assert live_before
    apply_event(
        state,
        StreamEnded(
            occurred_at=clock.tick(), stream_id="s", session_id="new", reason="stop_requested"
        ),
    )
    assert not state.channels["s"].live
    assert state.channels["s"].end_reason == "stop_requested"


def test_an_end_for_an_unknown_channel_creates_nothing() -> None:
    state = _state(
        [StreamEnded(occurred_at=T0, stream_id="ghost", session_id="x", reason="timeout")]
    )
    assert state.channels == {}
    assert not state.dirty_channels


def test_a_retry_after_a_transient_failure_clears_the_error() -> None:
    clock = _Clock(T0)
    state = _state(
        [
            TranscodeFailed(
                occurred_at=clock.tick(), video_id="v", user_id="u", reason="boom", permanent=True
            ),
            TranscodeProgress(
                occurred_at=clock.tick(), video_id="v", percent=150, stage="encoding"
            ),
        ]
    )
    video = state.videos["v"]
    assert (video.status, video.error, video.progress, video.user_id) == (
        "processing",
        None,
        100.0,
        "u",
    )


def test_a_source_event_after_the_delete_does_not_revive_the_video() -> None:
    clock = _Clock(T0)
    deleted = VideoDeleted(occurred_at=clock.tick(), video_id="v-up-1", user_id="u-alice")
    upload = _upload(clock, "u-alice", "v-up-1", "Cats")
    state = _state([deleted, upload])
    video = state.videos["v-up-1"]
    assert (video.status, video.title, video.user_id, video.origin) == (
        "deleted",
        "Cats",
        "u-alice",
        "upload",
    )


def test_the_published_title_wins_whatever_the_order() -> None:
    clock = _Clock(T0)
    upload = _upload(clock, "u-alice", "v", "draft")
    published = _published(clock, "u-alice", "v", "final")
    for order in ([upload, published], [published, upload]):
        assert _state(order).videos["v"].title == "final"


def test_a_video_without_any_time_sorts_last() -> None:
    state = _state([TranscodeProgress(occurred_at=T0, video_id="v", percent=1, stage="decoding")])
    assert state.videos["v"].sort_at == EPOCH


def test_deleting_the_thumbnail_recording_clears_it() -> None:
    clock = _Clock(T0)
    published = _published(
        clock, "u-alice", "v-rec", "rec", stream_id="s-alice", origin="recording"
    )
    state = _state(
        [published, VideoDeleted(occurred_at=clock.tick(), video_id="v-rec", user_id="u-alice")]
    )
    channel = state.channels["s-alice"]
    assert channel.poster_video_id is None
    assert channel.poster_key is None


def test_an_older_channel_update_does_not_overwrite_a_newer_one() -> None:
    new = ChannelUpdated(
        occurred_at=T0 + dt.timedelta(seconds=5), stream_id="s", user_id="u", title="new"
    )
    old = ChannelUpdated(occurred_at=T0, stream_id="s", user_id="u", title="old")
    assert _state([new, old]).channels["s"].title == "new"


def test_events_the_catalog_does_not_fold_are_refused() -> None:
    state = CatalogState()
    assert apply_event(state, StatsViewers(stream_id="s", gateway_id="g", viewers=1)) is False
    assert state.channels == {}


def test_keys_cover_the_rows_a_batch_touches() -> None:
    clock = _Clock(T0)
    upload = _upload(clock, "u-bob", "v1", "t")
    published = _published(clock, "u-alice", "v2", "t", stream_id="s-alice")
    keys = keys_of([upload, published, *scenario(T0)[:3]])
    assert {"v1", "v2"} <= keys.video_ids
    assert {"s-alice", "s-bob", "s-carol"} <= keys.stream_ids
    assert {"u-alice", "u-bob", "u-carol"} == keys.user_ids
