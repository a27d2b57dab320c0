"""Viewers per gateway process: concurrent LL-HLS blocking-reload viewers of one stream.

    .venv/bin/pytest -m bench tests/bench/bench_viewers.py -s

One live stream (ffmpeg's test pattern over RTMP into ``python -m ingest``, the folder
store, one nats-server) is served by ONE ``python -m gateway`` process. N viewers (one
asyncio loop here, one HTTP/1.1 connection each) play it the way hls.js does in
low-latency mode: a blocking reload for the part the last playlist's
``EXT-X-PRELOAD-HINT`` names (``_HLS_msn``/``_HLS_part``), then a GET of that part.
A reload is on time when it answers within one part target plus 0.5 s of being asked.

- ours: the gateway (blocking reload, playlists rendered per request, parts read
  from the store), its CPU from /proc over the window;
- peer: Debian's nginx serving the same part files from the same folder (what a CDN
  edge or static cache does for the immutable parts), polled by the same N viewers
  once per part target — its CPU over the same window.

N ramps through ``VIDEOPICK_BENCH_VIEWERS_STEPS`` (default 25,50,100,200) for
``VIDEOPICK_BENCH_VIEWERS_SECONDS`` (default 12) each and stops after the first step
below 99 % on time. Printed per step: on-time %, reloads/s, parts/s and CPU % of one
core for each side, and the cost per viewer (ours / peer). Viewers per core is the
step's N divided by the gateway's share of a core, at the last on-time step: the load
generator shares the machine, so the lead reruns it on a quiet one.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from common.nats_server import NatsServerProcess, free_port
from common.settings import load_settings
from common.supervisor import Supervisor
from ingest.rtmp.bench import cpu_seconds
from tests.cluster.media import live_position, publish_live
from tests.integration.chat_stack import register

pytestmark = pytest.mark.bench

STEPS = [
    int(n) for n in os.environ.get("VIDEOPICK_BENCH_VIEWERS_STEPS", "25,50,100,200").split(",")
]
SECONDS = float(os.environ.get("VIDEOPICK_BENCH_VIEWERS_SECONDS", "12"))
PART_TARGET_S = 0.25
ON_TIME_S = PART_TARGET_S + 0.5
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]*part(\d+)\.(\d+)\.m4s)"')
PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')


def tree_cpu_seconds(pid: int) -> float:
    """The process and its children (nginx's master and workers)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += cpu_seconds(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Tally:
    reloads: int = 0
    on_time: int = 0
    parts: int = 0
    errors: int = 0
    client_cpu: float = 0.0  # this load generator's share of a core
    waits: list[float] = field(default_factory=list)


async def ll_viewer(http: httpx.AsyncClient, playlist: str, until: float, tally: Tally) -> None:
    base = playlist.rsplit("/", 1)[0]
    text = (await http.get(playlist)).text
    while time.monotonic() < until:
        hint = HINT.search(text)
        if hint is None:
            tally.errors += 1
            await asyncio.sleep(PART_TARGET_S)
            text = (await http.get(playlist)).text
            continue
        uri, msn, part = hint.group(1), hint.group(2), hint.group(3)
        asked = time.monotonic()
        try:
            response = await http.get(playlist, params={"_HLS_msn": msn, "_HLS_part": part})
            waited = time.monotonic() - asked
            tally.reloads += 1
            tally.waits.append(waited)
            tally.on_time += waited <= ON_TIME_S
            text = response.text
            media = await http.get(f"{base}/{uri}")
            tally.parts += media.status_code == 200
        except httpx.HTTPError:
            tally.errors += 1


async def polling_viewer(
    http: httpx.AsyncClient, playlist: str, until: float, tally: Tally
) -> None:
    """The peer's viewer: poll the playlist each part target, fetch parts it has not seen."""
    base = playlist.rsplit("/", 1)[0]
    seen: set[str] = set()
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            text = (await http.get(playlist)).text
            tally.reloads += 1
            tally.on_time += 1
            for uri in PART.findall(text)[-2:]:
                if uri not in seen:
                    seen.add(uri)
                    tally.parts += (await http.get(f"{base}/{uri}")).status_code == 200
        except httpx.HTTPError:
            tally.errors += 1
        await asyncio.sleep(max(0.0, PART_TARGET_S - (time.monotonic() - started)))


@dataclass
class Platform:
    gateway: str
    gateway_pid: int
    stream_id: str
    media: Path


@pytest.fixture(scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    root = tmp_path_factory.mktemp("viewers")
    nats = NatsServerProcess(root / "nats", max_file_store="2G")
    nats.start()
    http_port, rtmp_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VIDEOPICK_")},
        "VIDEOPICK_NATS_URL": nats.url,
        "VIDEOPICK_DATA_DIR": str(root / "data"),
        "VIDEOPICK_HTTP_PORT": str(http_port),
        "VIDEOPICK_RTMP_PORT": str(rtmp_port),
        "VIDEOPICK_LIVE_RECORD": "false",
        "VIDEOPICK_LOG_LEVEL": "WARNING",
        "VIDEOPICK_EVENTS_MAX_BYTES": str(64 * 1024**2),
    }
    supervisor = Supervisor(load_settings(env), only=["gateway", "ingest"], env=env)
    task = asyncio.create_task(supervisor.run())
    loop = asyncio.get_running_loop()
    live: asyncio.subprocess.Process | None = None
    url = f"http://127.0.0.1:{http_port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "gateway not ready"
                await asyncio.sleep(0.25)
            user = await register(http, f"bench{uuid.uuid4().hex[:8]}")
            headers = {"Authorization": f"Bearer {user.token}"}
            key = (await http.get("/api/v2/streams/key", headers=headers)).json()["stream_key"]
            await http.post(
                "/api/v2/streams/start", json={"title": "bench", "description": ""}, headers=headers
            )
            seconds = 30 + len(STEPS) * (SECONDS + 10) * 2
            live = await publish_live(f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", seconds)
            while (await http.get(f"/live/{user.stream_id}/index.m3u8")).status_code != 200:
                assert time.monotonic() < deadline + 60, "no live playlist"
                await asyncio.sleep(0.5)
        gateway = next(c for c in supervisor.children if c.component == "gateway")
        assert gateway.process is not None
        yield Platform(url, gateway.process.pid, user.stream_id, root / "data" / "media")
    finally:
        if live is not None and live.returncode is None:
            live.kill()
            await live.wait()
        supervisor._stopping.set()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            nats.stop()


async def run_step(
    viewer: object, base_url: str, playlist: str, count: int, pid: int, *, tree: bool = False
) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
        measure = tree_cpu_seconds if tree else cpu_seconds
        start_cpu, start, mine = measure(pid), time.monotonic(), _own_cpu()
        until = start + SECONDS
        assert callable(viewer)
        await asyncio.gather(*(viewer(http, playlist, until, tally) for _ in range(count)))
        elapsed = time.monotonic() - start
        cpu = (measure(pid) - start_cpu) / elapsed
        tally.client_cpu = (_own_cpu() - mine) / elapsed
    return tally, cpu


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PlaylistMirror:
    """Copies the gateway's current playlist into nginx's folder every part target."""

    def __init__(self, gateway: str, playlist: str, target: Path) -> None:
        self.url, self.target = f"{gateway}{playlist}", target
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5.0) as http:
            while True:
                response = await http.get(self.url)
                if response.status_code == 200:
                    temp = self.target.with_suffix(".tmp")
                    temp.write_text(response.text)
                    temp.replace(self.target)  # atomic: nginx never serves half a file
                await asyncio.sleep(PART_TARGET_S)


def start_nginx(folder: Path, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "nginx.conf"
    config.write_text(
        f"worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; sendfile on; tcp_nodelay on; keepalive_requests 100000;\n"
        f"  client_body_temp_path {folder}; proxy_temp_path {folder};\n"
        f"  fastcgi_temp_path {folder}; uwsgi_temp_path {folder}; scgi_temp_path {folder};\n"
        f"  types {{ application/vnd.apple.mpegurl m3u8; video/mp4 m4s; }}\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    process = subprocess.Popen(
        ["nginx", "-p", str(folder), "-c", str(config), "-g", "daemon off; user root;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    assert process.poll() is None, (folder / "error.log").read_text()
    return process, port


async def test_viewers_per_gateway_process(platform: Platform, tmp_path: Path) -> None:
    playlist = f"/live/{platform.stream_id}/index.m3u8"
    media_root = platform.media  # parts live at media/live/{stream_id}/{session}/…
    mirror = PlaylistMirror(
        platform.gateway, playlist, media_root / "live" / platform.stream_id / "index.m3u8"
    )
    mirror.task = asyncio.create_task(mirror.run())
    nginx, port = start_nginx(tmp_path / "nginx", media_root)
    rows: list[tuple[int, Tally, float, Tally, float, float]] = []
    try:
        await asyncio.sleep(1.0)
        for count in STEPS:
            before = await _position(platform.gateway + playlist)
            ours, ours_cpu = await run_step(
                ll_viewer, platform.gateway, playlist, count, platform.gateway_pid
            )
            peer, peer_cpu = await run_step(
                polling_viewer, f"http://127.0.0.1:{port}", playlist, count, nginx.pid, tree=True
            )
            source = (await _position(platform.gateway + playlist) - before) / (2 * SECONDS)
            rows.append((count, ours, ours_cpu, peer, peer_cpu, source))
            if ours.on_time < 0.99 * max(1, ours.reloads):
                break
    finally:
        mirror.task.cancel()
        nginx.terminate()
        nginx.wait(10)

    print()
    print(f"LL-HLS viewers of one stream, {SECONDS:.0f} s per step, part target {PART_TARGET_S} s")
    print(
        f"{'N':>5} | {'on time':>7} | {'p50 wait':>8} | {'reloads/s':>9} | {'parts/s':>7} | "
        f"{'gateway CPU':>11} | {'client CPU':>10} | {'nginx parts/s':>13} | {'nginx CPU':>9} | "
        f"{'CPU per part ours/nginx':>23} | {'source segs/s':>13}"
    )
    best = 0.0
    for count, ours, ours_cpu, peer, peer_cpu, source in rows:
        on_time = ours.on_time / max(1, ours.reloads)
        wait = statistics.median(ours.waits) if ours.waits else math.nan
        ratio = (ours_cpu / max(1, ours.parts)) / max(1e-9, peer_cpu / max(1, peer.parts))
        print(
            f"{count:>5} | {on_time:>7.1%} | {wait * 1000:>6.0f}ms | "
            f"{ours.reloads / SECONDS:>9.0f} | {ours.parts / SECONDS:>7.0f} | {ours_cpu:>11.0%} | "
            f"{ours.client_cpu:>10.0%} | {peer.parts / SECONDS:>13.0f} | {peer_cpu:>9.0%} | "
            f"{ratio:>23.1f} | {source:>13.2f}"
        )
        if on_time >= 0.99 and ours_cpu > 0:
            best = max(best, count / ours_cpu)
    print(f"viewers per gateway core (last on-time step, N / gateway CPU share): {best:.0f}")
    assert rows, "no step ran"
    assert rows[0][1].reloads > 0, "no viewer got a single reload"
    assert rows[0][1].parts > 0
    assert rows[0][3].parts > 0


async def _position(url: str) -> int:
    """How far the live stream is (segments): the source must keep ~1/s for a fair step."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        return live_position((await http.get(url)).text)
