"""The hand-off record and the part bookkeeping a handed-off broadcast leaves behind."""

from __future__ import annotations

import msgspec

from events.catalog import StreamStarted
from ingest.packager.handoff import OWNER_GONE_S, Shared, as_dropped, owner_gone
from ingest.packager.retention import PartRetention


def test_a_lingering_record_round_trips_with_its_started_event() -> None:
    started = StreamStarted(
        stream_id="chan1",
        session_id="sess1",
        user_id="user1",
        video_codec="avc1.64001f",
        audio_codec="mp4a.40.2",
        width=1280,
        height=720,
        fps=30.0,
        init_key="live/chan1/sess1/init.mp4",
        part_target_s=0.25,
        segment_target_s=2.0,
    )
    record = Shared(
        state="lingering",
        owner="host:1:abcd",
        session_id="sess1",
        user_id="user1",
        deadline=1e9,
        reason="dropped",
        resume=(12, 12.5, 49, 0.25),
        has_init=True,
        started_event=started,
        started=True,
        stored_segments=12,
        segments=[(n, 1.0 + n / 100, n == 5, 1000 + n) for n in range(12)],
        duration_s=12.5,
        created_at=1.7e9,
    )
    decoded = msgspec.json.decode(msgspec.json.encode(record), type=Shared)
    assert decoded == record
    assert decoded.started_event == started  # the same event id: a re-publish is deduplicated


def test_remaining_parts_are_those_not_yet_expired() -> None:
    retention = PartRetention(target_duration_s=1.0)  # keeps 5 s of segments
    expired: list[tuple[int, int]] = []
    for sequence in range(8):
        expired += retention.add_segment(sequence, 1.0, 2)
    remaining = retention.remaining()
    assert sorted(expired + remaining) == [(s, i) for s in range(8) for i in range(2)]
    assert not set(expired) & set(remaining)
    assert remaining[-1] == (7, 1)


def test_a_live_record_without_a_fresh_heartbeat_is_a_broadcast_dropped_at_it() -> None:
    now = 1.7e9
    live = Shared(
        state="live",
        owner="host:1:abcd",
        session_id="sess1",
        heartbeat=now - OWNER_GONE_S - 0.5,
        window_s=60.0,
        resume=(9, 8.0, 1040, 0.25),
        segments=[(n, 1.0, False, 1000) for n in range(8)],
    )
    assert owner_gone(live, now)
    dropped = as_dropped(live)
    assert (dropped.state, dropped.deadline, dropped.reason) == (
        "lingering",
        live.heartbeat + 60.0,
        "dropped",
    )
    assert (dropped.resume, dropped.segments) == (live.resume, live.segments)
    # A fresh heartbeat, a record from before heartbeats, or another state: not gone.
    assert not owner_gone(msgspec.structs.replace(live, heartbeat=now - 1.0), now)
    assert not owner_gone(msgspec.structs.replace(live, heartbeat=0.0), now)
    assert not owner_gone(msgspec.structs.replace(live, state="lingering"), now)
