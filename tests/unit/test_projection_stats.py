"""The live-stats aggregate: pure arithmetic on (timestamp, value) events."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from gateway.projections.reducer import ChannelRow
from gateway.projections.stats import StatsAggregator, default_gateway_id, live_stats

pytestmark = pytest.mark.unit

T = 1_800_000_000.0  # a fixed epoch second


def test_viewers_are_summed_over_gateways_within_the_window() -> None:
    agg = StatsAggregator(viewers_window_s=15)
    agg.on_viewers("s", "gw-1", 3, T)
    agg.on_viewers("s", "gw-2", 4, T + 1)
    assert agg.viewers("s", T + 2) == 7
    agg.on_viewers("s", "gw-1", 1, T + 5)  # a newer report replaces the older one
    assert agg.viewers("s", T + 6) == 5
    # gw-2 last reported at T+1: gone once the window has passed, gw-1 still counts.
    assert agg.viewers("s", T + 17) == 1
    assert agg.viewers("s", T + 21) == 0
    assert agg.viewers("unknown", T) == 0


def test_an_out_of_order_report_does_not_replace_a_newer_one() -> None:
    agg = StatsAggregator()
    agg.on_viewers("s", "gw", 9, T + 10)
    agg.on_viewers("s", "gw", 2, T + 5)
    assert agg.viewers("s", T + 11) == 9


def test_peak_is_the_highest_total_since_the_session_start() -> None:
    agg = StatsAggregator(viewers_window_s=15)
    agg.on_viewers("s", "gw-1", 50, T - 100)  # an earlier broadcast
    agg.on_viewers("s", "gw-1", 3, T + 1)
    agg.on_viewers("s", "gw-2", 4, T + 2)  # 7
    agg.on_viewers("s", "gw-1", 1, T + 3)  # 5
    assert agg.peak("s", since=T) == 7
    assert agg.peak("s", since=T - 200) == 50
    assert agg.peak("s", since=T + 2.5) == 5
    assert agg.peak("s", since=T + 10) == 0
    assert agg.peak("nobody", since=T) == 0


@pytest.mark.parametrize("seed", range(20))
def test_peak_matches_a_brute_force_over_random_reports(seed: int) -> None:
    rng = random.Random(seed)
    agg = StatsAggregator(viewers_window_s=10)
    latest: dict[str, tuple[float, int]] = {}
    totals: list[tuple[float, int]] = []
    ts = T
    for _ in range(300):
        ts += rng.choice([0.0, 0.5, 1.0, 3.0, 12.0])
        gateway = rng.choice(["a", "b", "c"])
        count = rng.randint(0, 40)
        agg.on_viewers("s", gateway, count, ts)
        latest[gateway] = (ts, count)
        totals.append((ts, sum(n for t, n in latest.values() if t >= ts - 10)))
    for since in [T, *(rng.uniform(T, ts) for _ in range(50))]:
        expected = max((n for t, n in totals if t >= since), default=0)
        assert agg.peak("s", since) == expected


def test_ingest_is_the_latest_sample_of_the_current_session_until_stale() -> None:
    agg = StatsAggregator(ingest_stale_s=15)
    agg.on_ingest("s", "sess", 2500.0, 30.0, T)
    agg.on_ingest("s", "sess", 2400.0, 29.97, T + 5)
    agg.on_ingest("s", "sess", 1.0, 1.0, T + 1)  # late, older: ignored
    assert agg.ingest("s", T + 6, "sess") == (2400.0, 29.97)
    assert agg.ingest("s", T + 6, "another-session") == (0.0, 0.0)
    assert agg.ingest("s", T + 21, "sess") == (0.0, 0.0)
    assert agg.ingest("unknown", T, None) == (0.0, 0.0)


def test_chat_rate_counts_the_last_window() -> None:
    agg = StatsAggregator(chat_window_s=60)
    for i in range(90):
        agg.on_chat("s", T + i)  # one message a second for 90 s
    assert agg.chat_per_minute("s", T + 89) == 61  # [T+29, T+89], both ends included
    assert agg.chat_per_minute("s", T + 200) == 0
    assert agg.chat_per_minute("unknown", T) == 0


def test_prune_forgets_old_state() -> None:
    agg = StatsAggregator(viewers_window_s=15, chat_window_s=60)
    agg.on_viewers("old", "gw", 5, T)
    agg.on_chat("old", T)
    agg.on_viewers("new", "gw", 5, T + 100_000)
    agg.prune(T + 100_001)
    assert agg.peak("old", T - 1) == 0  # dropped entirely after a day of silence
    assert agg.viewers("new", T + 100_001) == 5


def _channel(*, live: bool, started_at: dt.datetime | None) -> ChannelRow:
    return ChannelRow(
        stream_id="s", live=live, session_id="sess" if live else None, started_at=started_at
    )


def test_live_stats_of_a_live_channel() -> None:
    start = dt.datetime.fromtimestamp(T, dt.UTC)
    agg = StatsAggregator()
    agg.on_viewers("s", "gw", 12, T + 10)
    agg.on_ingest("s", "sess", 3000.0, 60.0, T + 10, keyframe_interval_s=2.0)
    agg.on_chat("s", T + 11)
    stats = live_stats(agg, _channel(live=True, started_at=start), start + dt.timedelta(seconds=12))
    assert (stats.live, stats.viewers, stats.peak_viewers) == (True, 12, 12)
    assert (stats.bitrate_kbps, stats.fps, stats.uptime_s, stats.chat_per_minute) == (
        3000.0,
        60.0,
        12.0,
        1,
    )
    assert stats.keyframe_interval_s == 2.0


def test_live_stats_of_an_offline_channel_are_zero_but_chat() -> None:
    agg = StatsAggregator()
    agg.on_viewers("s", "gw", 12, T)
    agg.on_chat("s", T)
    stats = live_stats(
        agg, _channel(live=False, started_at=None), dt.datetime.fromtimestamp(T + 1, dt.UTC)
    )
    assert (stats.live, stats.viewers, stats.peak_viewers, stats.uptime_s) == (False, 0, 0, 0.0)
    assert stats.chat_per_minute == 1


def test_gateway_ids_differ_per_process() -> None:
    import os

    assert default_gateway_id().endswith(f"-{os.getpid()}")
