"""Live capacity: concurrent 6 Mbit/s 1080p30 publishers remuxed with every part on time.

    .venv/bin/pytest -m bench tests/bench/bench_live_capacity.py -s

One 1080p30 clip (x264 ultrafast, CBR 6 Mbit/s with filler, 1 s GOP, AAC) is encoded
once and cached; its FLV tags are chunked once by the project's RTMP framing
(tests/bench/rtmp_publish.py). This process then replays those bytes at real-time pace
on N connections to ``python -m ingest`` (the real server, packager, folder store and
JetStream), starting 0.1 s apart, one asyncio loop writing every due tag on a 5 ms
tick — so the publishers cost little of the CPU being measured. Measured: the steady
state, from 3 s after the last publisher started to the end of the clip.

A part is on time when its ``stream.part`` event (what the gateway lists it from)
arrives here no later than one part duration (the part target) after its last video frame was sent.
Missing parts count as late. N ramps through ``VIDEOPICK_BENCH_CAPACITY_STEPS``
(default 10,25,50,75,100) and stops after the first step below 99 % on time; the
answer is the largest N at or above it. Also printed: the ingest processes' CPU (% of one
core, /proc/<pid>/stat over the window) and this process's.

One ingest process is one core (one GIL); ``VIDEOPICK_BENCH_CAPACITY_INGESTS`` (default:
the number of cores) ingest processes share the RTMP port with SO_REUSEPORT
(``VIDEOPICK_RTMP_REUSE_PORT``) and the kernel spreads the publishers.

``VIDEOPICK_BENCH_CAPACITY_STORE=/dev/shm`` puts the folder store on tmpfs (takes the
disk's fsync latency out; the default is the test's data folder on disk), and
``VIDEOPICK_BENCH_CAPACITY_THUMBNAILS=0`` turns live thumbnails off.
The peer, nginx with Debian's libnginx-mod-rtmp (``hls on; hls_fragment 1s``), gets the
same N publishers after each step; its CPU per stream is printed beside ours
(``VIDEOPICK_BENCH_CAPACITY_PEER=0`` skips it). Its "on time" is not measured: it has no
parts, and a 1 s fragment is late by design.

``VIDEOPICK_BENCH_PROFILE=DIR`` records py-spy profiles of the ingest process (collapsed
stacks, one file per step) into DIR.

Recording is off (``VIDEOPICK_LIVE_RECORD=false``): it runs when a broadcast ends, not
while it is live, and would land in the next step. ``VIDEOPICK_BENCH_CAPACITY_SECONDS``
sets the clip length (default 20).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nats
import pytest
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.nats_server import free_port
from common.settings import Settings
from events.broker import create_broker
from events.catalog import ChannelKeyRotated, StreamPart
from events.publisher import EventPublisher
from ingest.auth import hash_key
from ingest.packager.flvfile import read_tags
from ingest.rtmp.bench import cpu_seconds, make_clip
from tests.bench.nginx_rtmp import NginxRtmp, nginx_rtmp
from tests.bench.procs import listening_pids
from tests.bench.rtmp_publish import FLV_SCRIPT, FLV_VIDEO, RtmpPublisher, chunk_tags
from tests.integration.live_stack import ingest_caught_up, ingest_process

pytestmark = pytest.mark.bench

STEPS = [
    int(n) for n in os.environ.get("VIDEOPICK_BENCH_CAPACITY_STEPS", "10,25,50,75,100").split(",")
]
CLIP_S = float(os.environ.get("VIDEOPICK_BENCH_CAPACITY_SECONDS", "30"))
MBPS = 6.0
ON_TIME_GOAL = 0.99
CAPACITY_GOAL = 50
TICK_S = 0.005
STAGGER_S = 0.1  # between publisher starts: ten new broadcasts a second
SETTLE_S = 3.0  # after the last start: start-up (init, stream.started, thumbnails) is over
DRAIN_S = 3.0
# Ingest processes sharing the RTMP port (SO_REUSEPORT): one per core by default.
INGESTS = int(os.environ.get("VIDEOPICK_BENCH_CAPACITY_INGESTS", str(os.cpu_count() or 1)))
# The folder store on another file system (e.g. /dev/shm: no disk, no fsync stalls).
STORE_DIR = os.environ.get("VIDEOPICK_BENCH_CAPACITY_STORE", "")
PEER = os.environ.get("VIDEOPICK_BENCH_CAPACITY_PEER", "1") != "0"
THUMBNAILS = os.environ.get("VIDEOPICK_BENCH_CAPACITY_THUMBNAILS", "1") != "0"
PROFILE_DIR = os.environ.get("VIDEOPICK_BENCH_PROFILE", "")
CACHE = Path.home() / ".cache" / "videopick" / "bench"


async def wait_listening(pids: list[int], port: int, timeout_s: float = 120.0) -> None:
    """Until every ingest process listens (polling /proc: nothing to wait on instead)."""
    deadline = time.monotonic() + timeout_s
    while len(listening_pids(pids, port)) < len(pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"not every ingest listens on {port} after {timeout_s} s")
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Clip:
    chunks: list[bytes]  # each tag as RTMP bytes
    at_s: list[float]  # each tag's time from the first
    video_tag: list[int | None]  # index in video_ts of each tag that is a coded frame
    video_ts: list[int]  # ms of each coded video frame
    video_s: list[float]  # each coded video frame's time from the first
    origin_ms: int  # timestamp of the first audio or video tag


def load_clip() -> Clip:
    path = CACHE / f"clip-1080p30-{MBPS:g}M-{CLIP_S:g}s-gop30.flv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        make_clip(partial, CLIP_S, MBPS, size="1920x1080", gop=30)
        partial.rename(path)
    tags = list(read_tags(path.read_bytes()))
    first = tags[0].timestamp_ms
    video_ts: list[int] = []
    video_tag: list[int | None] = []
    for tag in tags:
        if tag.kind == FLV_VIDEO and len(tag.body) > 1 and tag.body[1] == 1:
            video_tag.append(len(video_ts))
            video_ts.append(tag.timestamp_ms)
        else:
            video_tag.append(None)
    return Clip(
        chunk_tags(tags),
        [(t.timestamp_ms - first) / 1000 for t in tags],
        video_tag,
        video_ts,
        [(ts - video_ts[0]) / 1000 for ts in video_ts],
        min(t.timestamp_ms for t in tags if t.kind != FLV_SCRIPT),
    )


@dataclass
class Connection:
    stream_id: str
    publisher: RtmpPublisher
    start: float = 0.0
    next_tag: int = 0
    video_sent: list[float] = field(default_factory=list)  # send time per coded frame


@dataclass
class Step:
    publishers: int
    parts: int
    on_time: int
    missing: int
    delays: list[float]
    ingest_cpu: float  # % of one core
    bench_cpu: float
    max_lag_ms: float
    late_at: Counter[int]
    peer_cpu: float = float("nan")  # nginx-rtmp, same publishers

    @property
    def ratio(self) -> float:
        return self.on_time / (self.parts + self.missing) if self.parts + self.missing else 0.0


async def replay(connections: list[Connection], clip: Clip) -> float:
    """Write every due tag on every connection until all are done; the worst lag (s)."""
    worst = 0.0
    while True:
        now = time.monotonic()
        active = False
        for conn in connections:
            while conn.next_tag < len(clip.chunks) and conn.start + clip.at_s[conn.next_tag] <= now:
                worst = max(worst, now - conn.start - clip.at_s[conn.next_tag])
                conn.publisher.write(clip.chunks[conn.next_tag])
                if clip.video_tag[conn.next_tag] is not None:
                    conn.video_sent.append(now)
                conn.next_tag += 1
            active = active or conn.next_tag < len(clip.chunks)
        if not active:
            return worst
        await asyncio.sleep(TICK_S)


@contextlib.contextmanager
def profiled(pid: int, n: int) -> Iterator[None]:
    """py-spy on the ingest process while the block runs (VIDEOPICK_BENCH_PROFILE)."""
    if not PROFILE_DIR:
        yield
        return
    out = Path(PROFILE_DIR) / f"ingest-{n}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
         "--format", "raw", "--rate", "100", "--gil", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        spy.wait(timeout=30)


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_step(
    n: int,
    step: int,
    port: int,
    pids: list[int],
    clip: Clip,
    keys: EventPublisher,
    settings: Settings,
) -> Step:
    names = {f"cap{step}x{i}": secrets.token_urlsafe(24) for i in range(n)}
    for stream_id, key in names.items():
        await keys.publish(
            ChannelKeyRotated(stream_id=stream_id, user_id="bench", key_hash=hash_key(key))
        )
    await ingest_caught_up(settings)

    received: dict[str, list[tuple[float, StreamPart]]] = defaultdict(list)
    client = await nats.connect(settings.resolved_nats_url)

    async def on_part(msg: Msg) -> None:
        part = msgspec.json.decode(msg.data, type=StreamPart)
        received[part.stream_id].append((time.monotonic(), part))

    await client.subscribe(StreamPart.subject_filter(), cb=on_part)
    limit = asyncio.Semaphore(10)

    async def open_one(stream_id: str, key: str) -> Connection:
        async with limit:
            return Connection(stream_id, await RtmpPublisher.open("127.0.0.1", port, "live", key))

    connections = list(await asyncio.gather(*(open_one(s, k) for s, k in names.items())))
    try:
        begin = time.monotonic() + 0.2
        for index, conn in enumerate(connections):
            conn.start = begin + index * STAGGER_S
        window = connections[-1].start + SETTLE_S  # steady state: every publisher running
        sampler = asyncio.create_task(_cpu_at(window, pids))
        with profiled(pids[0], n):
            lag = await replay(connections, clip)
        ended = time.monotonic()
        (cpu_before, self_before), cpu_after = await sampler, (_cpu_of(pids), _cpu_self())
        ingest_cpu = 100 * (cpu_after[0] - cpu_before) / (ended - window)
        bench_cpu = 100 * (cpu_after[1] - self_before) / (ended - window)
        await asyncio.sleep(DRAIN_S)  # parts still on their way
    finally:
        for conn in connections:
            await conn.publisher.close()
        await client.close()

    # "One part duration": the nominal part (a segment's last part may be much shorter).
    part_target_s = settings.live_part_target_s
    delays: list[float] = []
    on_time = 0
    late_at: Counter[int] = Counter()  # late parts by media second: bursts or steady?
    got: dict[str, set[tuple[int, int]]] = {}
    media_end: dict[tuple[int, int], float] = {}  # the same parts on every stream (same clip)
    last_frame = len(clip.video_ts) - 1
    for conn in connections:
        end_s = 0.0
        got[conn.stream_id] = set()
        for arrived, part in received[conn.stream_id]:
            end_s += part.duration_s
            part_key = (part.sequence, part.part_index)
            # The packager's timeline starts at the first media tag; a part ends where the
            # next frame starts, so its last frame is the one before that end.
            frame = bisect.bisect_left(clip.video_ts, clip.origin_ms + 1000 * end_s - 5) - 1
            if frame < 0 or frame >= last_frame:
                continue  # the clip's last part has no next frame to close it
            media_end[part_key] = clip.video_s[frame]
            sent = conn.video_sent[frame]
            if sent < window:
                continue
            got[conn.stream_id].add(part_key)
            delay = arrived - sent
            delays.append(delay)
            on_time += delay <= part_target_s
            if delay > part_target_s:
                late_at[int(sent - window)] += 1
    # What the window should hold for each stream, from what any stream got.
    missing = 0
    for conn in connections:
        first = window - conn.start
        expected = {k for k, m in media_end.items() if m >= first}
        missing += len(expected - got[conn.stream_id])
    return Step(
        n, len(delays), on_time, missing, delays, ingest_cpu, bench_cpu, 1000 * lag, late_at
    )


async def peer_cpu(n: int, nginx: NginxRtmp, clip: Clip) -> float:
    """nginx-rtmp's CPU (% of one core) remuxing the same N publishers to HLS, measured
    over the same steady-state window."""
    connections = [
        Connection(
            f"peer{i}", await RtmpPublisher.open("127.0.0.1", nginx.rtmp_port, "live", f"peer{i}")
        )
        for i in range(n)
    ]
    try:
        begin = time.monotonic() + 0.2
        for index, conn in enumerate(connections):
            conn.start = begin + index * STAGGER_S
        window = connections[-1].start + SETTLE_S
        pids = nginx.pids()
        sampler = asyncio.create_task(_cpu_at(window, pids))
        await replay(connections, clip)
        ended = time.monotonic()
        before, _ = await sampler
        return 100 * (_cpu_of(pids) - before) / (ended - window)
    finally:
        for conn in connections:
            await conn.publisher.close()


def _cpu_of(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def _cpu_at(when: float, pids: list[int]) -> tuple[float, float]:
    """(ingest CPU-s, this process's CPU-s) at monotonic time ``when``."""
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    return _cpu_of(pids), _cpu_self()


def _q(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@pytest.fixture
async def key_publisher(
    settings: Settings, event_streams: JetStreamContext
) -> AsyncIterator[EventPublisher]:
    broker: NatsBroker = create_broker(settings, name="bench-keys")
    await broker.start()
    yield EventPublisher(broker, producer="gateway")
    await broker.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_live_capacity(
    gateway_settings: Settings, key_publisher: EventPublisher, tmp_path: Path
) -> None:
    clip = load_clip()
    extra = {
        "VIDEOPICK_RTMP_MAX_CONNECTIONS_PER_HOST": "10000",
        "VIDEOPICK_LIVE_RECORD": "false",
        "VIDEOPICK_RTMP_REUSE_PORT": "true",
    }
    store = Path(tempfile.mkdtemp(dir=STORE_DIR)) if STORE_DIR else None
    if store is not None:
        extra["VIDEOPICK_STORE_PATH"] = str(store)
    if not THUMBNAILS:
        extra["VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S"] = "0"
    steps: list[Step] = []
    port = free_port()
    try:
        with contextlib.ExitStack() as stack:
            pids = [
                stack.enter_context(
                    ingest_process(gateway_settings, tmp_path / f"ingest-{i}.log", extra, port=port)
                ).pid
                for i in range(INGESTS)
            ]
            # The port answers as soon as the first one listens: wait for every one,
            # or a slow starter gets no publishers at all.
            await wait_listening(pids, port)
            nginx = stack.enter_context(nginx_rtmp(tmp_path / "nginx")) if PEER else None
            for index, n in enumerate(STEPS):
                step = await run_step(n, index, port, pids, clip, key_publisher, gateway_settings)
                if nginx is not None:
                    step.peer_cpu = await peer_cpu(n, nginx, clip)
                steps.append(step)
                if step.ratio < ON_TIME_GOAL:
                    break
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(store or gateway_settings.resolved_store_path)

    print(
        f"\nLive capacity: 1920x1080p30 at {MBPS:g} Mbit/s, 1 s GOP, {CLIP_S:g} s per publisher, "
        f"{INGESTS} ingest process(es) on one port"
    )
    print(
        f"{'publishers':>10} {'parts':>7} {'on time':>8} {'missing':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'ingest CPU':>11} {'per stream':>11} {'bench CPU':>10} "
        f"{'send lag':>9}"
    )
    for s in steps:
        print(
            f"{s.publishers:>10} {s.parts:>7} {100 * s.ratio:>7.2f}% {s.missing:>8} "
            f"{1000 * _q(s.delays, 50):>8.1f} {1000 * _q(s.delays, 99):>8.1f} "
            f"{1000 * max(s.delays, default=float('nan')):>8.1f} {s.ingest_cpu:>10.1f}% "
            f"{s.ingest_cpu / s.publishers:>10.2f}% {s.bench_cpu:>9.1f}% {s.max_lag_ms:>7.1f}ms"
        )
    if PEER:
        print("\nCPU per stream, same publishers (% of one core): ours vs nginx-rtmp (hls on, 1 s)")
        print(f"{'publishers':>10} {'ours':>8} {'nginx':>8} {'ours/nginx':>11}")
        for s in steps:
            ours, peer = s.ingest_cpu / s.publishers, s.peer_cpu / s.publishers
            print(f"{s.publishers:>10} {ours:>7.2f}% {peer:>7.2f}% {ours / peer:>10.1f}x")
    capacity = max((s.publishers for s in steps if s.ratio >= ON_TIME_GOAL), default=0)
    for s in steps:
        if s.max_lag_ms > 50:
            print(
                f"warning: with {s.publishers} publishers this process fell {s.max_lag_ms:.0f} ms "
                "behind its schedule: the machine is busy, the figures are not clean"
            )
        if s.late_at:
            where = ", ".join(f"{sec}s:{count}" for sec, count in sorted(s.late_at.items()))
            print(f"late parts of {s.publishers} publishers by second of the window: {where}")
    print(f"capacity: {capacity} publishers with >= {100 * ON_TIME_GOAL:.0f} % of parts on time")
    assert steps[0].parts > 0, "no parts measured"
    # No part is out before its last frame was sent; else the frame mapping is wrong.
    assert min(steps[0].delays) > 0
    assert capacity >= CAPACITY_GOAL
