"""JetStream publish rate: the production shape (3 replicas, ``sync_interval: always``)
against the embedded default (1 node, fsync every 2 min), same machine, same run.

    .venv/bin/pytest -m bench tests/bench/bench_jetstream_cluster.py -s

Each side gets a fresh stream shaped like LIVE_MEDIA and receives
``VIDEOPICK_BENCH_JS_MESSAGES`` (default 5000) 300-byte messages (a ``stream.part``
event's size) on ``stream.part.<id>`` subjects, acknowledged one by one (a producer
that waits for each PubAck, as ingest does per stream) and with 64 in flight (many
streams publishing at once). Printed: acked messages/s per side and the ratio; the
capacity model (docs/capacity.md) scales the 1,000-streams case from it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from common.cluster import NatsCluster
from common.nats_server import NatsServerProcess

pytestmark = pytest.mark.bench

MESSAGES = int(os.environ.get("VIDEOPICK_BENCH_JS_MESSAGES", "5000"))
PAYLOAD = b"x" * 300
IN_FLIGHT = 64


async def publish_rate(urls: list[str], replicas: int, in_flight: int) -> float:
    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        name = f"BENCH_R{replicas}_{in_flight}"
        await js.add_stream(
            StreamConfig(
                name=name,
                subjects=[f"bench{replicas}{in_flight}.part.>"],
                storage=StorageType.FILE,
                num_replicas=replicas,
            )
        )
        semaphore = asyncio.Semaphore(in_flight)

        async def one(index: int) -> None:
            async with semaphore:
                await js.publish(f"bench{replicas}{in_flight}.part.s{index % 100}", PAYLOAD)

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(MESSAGES)))
        rate = MESSAGES / (time.perf_counter() - start)
        info = await js.stream_info(name)
        assert info.state.messages == MESSAGES
        await js.delete_stream(name)
        return rate
    finally:
        await nc.close()


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[tuple[list[str], list[str]]]:
    with tempfile.TemporaryDirectory(prefix="vp-jsbench-") as folder:
        single = NatsServerProcess(Path(folder) / "single", max_file_store="2G")
        cluster = NatsCluster(Path(folder) / "cluster")
        single.start()
        await asyncio.to_thread(cluster.start)
        try:
            yield [single.url], cluster.url.split(",")
        finally:
            cluster.stop()
            single.stop()


async def test_publish_rate_three_replicas_always_synced(
    servers: tuple[list[str], list[str]],
) -> None:
    single, cluster = servers
    rows = []
    for in_flight in (1, IN_FLIGHT):
        ours = await publish_rate(cluster, 3, in_flight)
        peer = await publish_rate(single, 1, in_flight)
        rows.append((in_flight, ours, peer))
    print()
    print(f"JetStream acked publishes/s, {MESSAGES} x {len(PAYLOAD)} B")
    print(f"{'in flight':>9} | {'R3 sync always':>14} | {'R1 default':>10} | {'ratio':>5}")
    for in_flight, ours, peer in rows:
        print(f"{in_flight:>9} | {ours:>14.0f} | {peer:>10.0f} | {ours / peer:>5.2f}")
    assert all(ours > 0 and peer > 0 for _, ours, peer in rows)
