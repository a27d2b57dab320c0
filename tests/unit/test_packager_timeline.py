"""Publisher timestamps going backwards or jumping: clamped or re-based, logged, no crash."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from common.logs import get_logger
from ingest.packager.timeline import SessionBase, TrackClock

pytestmark = pytest.mark.unit


def clock(base: SessionBase | None = None) -> TrackClock:
    return TrackClock("video", base or SessionBase(), get_logger("test"), nominal_ms=33)


def test_first_sample_is_time_zero_for_every_track() -> None:
    base = SessionBase()
    video, audio = clock(base), clock(base)
    assert video.map(5000, 0.0) == 0
    assert audio.map(4990, 0.0) == 0  # 10 ms before the origin: starts at 0
    assert audio.map(5011, 0.02) == 11
    assert video.map(5033, 0.03) == 33


def test_small_step_back_is_clamped_and_logged_once() -> None:
    video = clock()
    with capture_logs() as logs:
        times = [video.map(ts, i * 0.033) for i, ts in enumerate([0, 33, 66, 50, 49, 100])]
    assert times == [0, 33, 66, 67, 68, 100]
    warnings = [entry for entry in logs if "clamped" in entry["event"]]
    assert len(warnings) == 1  # rate-limited


def test_big_jumps_are_rebased() -> None:
    video = clock()
    with capture_logs() as logs:
        first = [video.map(ts, 0.0) for ts in (0, 33, 66)]
        # A 2^32 ms wrap, then a reset to 0: both continue one frame later.
        wrapped = video.map(2**32 - 10, 0.1)
        after = video.map(2**32 + 23, 0.13)
        reset = video.map(0, 0.16)
    assert first == [0, 33, 66]
    assert (wrapped, after, reset) == (99, 132, 165)
    assert sum("re-based" in entry["event"] for entry in logs) == 2


def test_a_real_stall_keeps_its_gap() -> None:
    video = clock()
    video.map(0, 100.0)
    # 3 s of nothing, and 3 s of wall clock went by too: the gap is real.
    assert video.map(3000, 103.0) == 3000
