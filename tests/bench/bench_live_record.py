"""The live record's cost at the hot path: the full packaging path with and without it.

    flock /tmp/vp/bench.lock .venv/bin/pytest -m bench tests/bench/bench_live_record.py -s

While a broadcast is live, its owner rewrites the channel's record in JetStream KV
after every stored segment and on a heartbeat (ingest/packager/handoff.py), so another
ingest process can continue or end it if this one crashes. The writes run in a task
of their own; this measures that parts do not notice. The same 1080p30 6 Mbit/s clip
is replayed in real time into ``LivePackaging`` (private nats-server, folder store;
``ingest.packager.bench.full_path``) by N concurrent streams, alternately with the
record ("shared": publishes opened as the RTMP server opens them) and without it
("local"), ``VIDEOPICK_BENCH_RECORD_ROUNDS`` times each (default 2); printed: the
``stream.part`` acked latency p50/p95, CPU per stream, and the record updates' own
duration (CAS round trip) p50/p99. ``VIDEOPICK_BENCH_RECORD_STREAMS`` (default 8) and
``VIDEOPICK_BENCH_RECORD_SECONDS`` (default 12) size it.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import pytest

from ingest.packager.bench import full_path, media_tags
from ingest.packager.testmedia import make_flv

pytestmark = pytest.mark.bench


async def test_the_live_record_costs_parts_nothing(tmp_path: Path) -> None:
    seconds = float(os.environ.get("VIDEOPICK_BENCH_RECORD_SECONDS", "12"))
    streams = int(os.environ.get("VIDEOPICK_BENCH_RECORD_STREAMS", "8"))
    rounds = int(os.environ.get("VIDEOPICK_BENCH_RECORD_ROUNDS", "2"))
    flv = make_flv(
        tmp_path / "bench.flv",
        seconds=seconds,
        width=1920,
        height=1080,
        gop=30,
        video_kbps=6000,
        preset="ultrafast",
    )
    tags = media_tags(flv)
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for _ in range(rounds):
        for shared in (False, True):
            results[shared].append(await full_path(tags, streams, seconds, False, shared=shared))

    def mean(shared: bool, key: str) -> float:
        return statistics.fmean(r[key] for r in results[shared])

    print(f"\n{streams} streams x {seconds:.0f} s, 1080p30 6 Mbit/s, {rounds} rounds each")
    print(f"{'':28}{'with record':>14}{'without':>12}{'ratio':>8}")
    for key, label in (
        ("acked_p50_ms", "stream.part acked p50 ms"),
        ("acked_p95_ms", "stream.part acked p95 ms"),
        ("cpu_pct_per_stream", "CPU % of a core / stream"),
    ):
        ours, peer = mean(True, key), mean(False, key)
        print(f"{label:28}{ours:>14.2f}{peer:>12.2f}{ours / peer if peer else 0.0:>8.2f}")
    updates = sum(r["record_updates"] for r in results[True])
    print(
        f"record updates: {updates}, CAS round trip p50 {mean(True, 'record_update_p50_ms'):.2f}"
        f" ms, p99 {mean(True, 'record_update_p99_ms'):.2f} ms"
    )
    assert updates >= streams * rounds  # the record was kept
    assert all(r["parts"] > 0 for rs in results.values() for r in rs)
