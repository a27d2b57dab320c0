"""Concurrent viewers: distinct playback sessions within a 15 s window."""

from __future__ import annotations

import pytest

from gateway.live.viewers import ViewerTracker, viewer_key

pytestmark = pytest.mark.unit


def test_distinct_sessions_are_counted_once_per_stream() -> None:
    tracker = ViewerTracker(window_s=15)
    alice, bob = viewer_key("10.0.0.1", "Chrome"), viewer_key("10.0.0.2", "Firefox")
    for now in (0.0, 0.25, 0.5):  # an LL-HLS player polls every part
        tracker.seen("s1", alice, now)
    tracker.seen("s1", bob, 1.0)
    tracker.seen("s2", alice, 1.0)
    assert tracker.counts(2.0) == {"s1": 2, "s2": 1}


def test_a_viewer_gone_for_the_window_leaves_and_zero_is_reported_once() -> None:
    tracker = ViewerTracker(window_s=15)
    tracker.seen("s1", viewer_key("10.0.0.1", "Chrome"), 0.0)
    tracker.seen("s1", viewer_key("10.0.0.2", "Chrome"), 10.0)
    assert tracker.counts(14.0) == {"s1": 2}
    assert tracker.counts(20.0) == {"s1": 1}
    assert tracker.counts(30.0) == {"s1": 0}  # the last one left: say so once
    assert tracker.counts(31.0) == {}


def test_the_key_hides_the_address_and_tells_clients_apart() -> None:
    key = viewer_key("203.0.113.9", "Safari")
    assert "203.0.113.9" not in key
    assert key == viewer_key("203.0.113.9", "Safari")
    assert key != viewer_key("203.0.113.9", "Chrome")
