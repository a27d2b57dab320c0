"""A real live stack for browser tests and benchmarks: processes, publisher, player page.

- :func:`ingest_process`: ``python -m ingest`` (RTMP on a free port), ready when it accepts.
- :func:`harness_server`: tests/live_harness (hls.js from npm, pinned by its lock file)
  from a small HTTP server on 127.0.0.1; its origin is what the gateway's CORS allows.
- :func:`player_stack`: the harness page, a gateway whose CORS allows it, an ingest.
- :func:`register_streamer`: a user over HTTP, and their stream key once ingest has it.
- :func:`ffmpeg_publish`: the ffmpeg CLI encoding a test picture live, like OBS.
- :func:`chromium`: Debian's Chromium under Playwright (never ``playwright install``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import nats
from playwright.async_api import Browser, async_playwright

from common.nats_server import free_port
from common.settings import Settings
from events.catalog import ChannelKeyRotated
from ingest.bus import KEYS_DURABLE
from tests.fixtures.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.gateway import REPO_ROOT, gateway_env, gateway_process

HARNESS_DIR = REPO_ROOT / "tests" / "live_harness"
HLS_JS = HARNESS_DIR / "node_modules" / "hls.js" / "dist" / "hls.min.js"
START_TIMEOUT_S = 30.0


def ensure_hls_js() -> Path:
    """hls.js from the npm registry, exactly as tests/live_harness/package-lock.json pins it."""
    if not HLS_JS.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed for hls.js (scripts/install-system-deps.sh)")
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
            cwd=HARNESS_DIR,
            check=True,
        )
    return HLS_JS


def wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)  # polling a condition with a deadline
    raise RuntimeError(f"port {port} not open in {START_TIMEOUT_S} s:\n{log_path.read_text()}")


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: the graceful path
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class IngestProcess:
    port: int  # RTMP
    pid: int


@contextlib.contextmanager
def ingest_process(
    settings: Settings,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    *,
    port: int | None = None,
) -> Iterator[IngestProcess]:
    """``python -m ingest`` sharing ``settings``' NATS, database and store (and ``port``,
    with ``VIDEOPICK_RTMP_REUSE_PORT=true`` in ``extra_env``, with another ingest)."""
    port = port or free_port()
    env = gateway_env(
        settings, free_port(), {"VIDEOPICK_RTMP_PORT": str(port), **(extra_env or {})}
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process, log_path)
            yield IngestProcess(port, process.pid)
        finally:
            stop_process(process)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def harness_server() -> Iterator[str]:
    """tests/live_harness over HTTP on 127.0.0.1; its origin (``http://127.0.0.1:PORT``)."""
    ensure_hls_js()
    handler = functools.partial(_QuietHandler, directory=str(HARNESS_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="live-harness", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class PlayerStack(NamedTuple):
    origin: str  # the harness page's
    gateway_url: str
    ingest: IngestProcess


@contextlib.contextmanager
def player_stack(settings: Settings, tmp_path: Path) -> Iterator[PlayerStack]:
    """The hls.js harness page, a gateway that allows its origin, and an ingest."""
    with (
        harness_server() as origin,
        gateway_process(
            settings, tmp_path / "gateway.log", {"VIDEOPICK_CORS_ORIGINS": origin}
        ) as gateway_url,
        ingest_process(settings, tmp_path / "ingest.log") as ingester,
    ):
        yield PlayerStack(origin, gateway_url, ingester)


@dataclass(frozen=True)
class Streamer:
    stream_id: str
    stream_key: str


async def ingest_caught_up(settings: Settings, deadline_s: float = START_TIMEOUT_S) -> None:
    """Wait until ingest's key consumer has processed every ``channel.key_rotated``."""
    client = await nats.connect(settings.resolved_nats_url)
    try:
        js = client.jetstream()
        stream = await js.find_stream_name_by_subject(ChannelKeyRotated.subject_filter())
        async with asyncio.timeout(deadline_s):
            while True:
                last = (await js.stream_info(stream)).state.last_seq
                info = await js.consumer_info(stream, KEYS_DURABLE)
                if info.delivered.stream_seq >= last and not info.num_ack_pending:
                    return
                await asyncio.sleep(0.05)
    finally:
        await client.close()


async def register_streamer(gateway_url: str, settings: Settings, name: str) -> Streamer:
    """Register ``name`` at the gateway; returns once ingest knows the new stream key."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as http:
        registered = await http.post(
            "/api/v2/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": f"pw-{name}-ok!"},
        )
        registered.raise_for_status()
        token = registered.json()["access_token"]
        key = await http.get("/api/v2/streams/key", headers={"Authorization": f"Bearer {token}"})
        key.raise_for_status()
    await ingest_caught_up(settings)
    body = key.json()
    return Streamer(stream_id=body["stream_id"], stream_key=body["stream_key"])


def ffmpeg_encode_args(
    *, size: str = "1280x720", fps: int = 30, gop_s: float = 1.0, seconds: float = 60.0
) -> list[str]:
    """A live x264/AAC encode of a test picture (``-re``), as OBS with 1 s keyframes sends."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(round(fps * gop_s)), "-keyint_min", str(round(fps * gop_s)),
        "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k",
    ]  # fmt: skip


def ffmpeg_publish(rtmp_url: str, log_path: Path, **encode: Any) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*ffmpeg_encode_args(**encode), "-f", "flv", rtmp_url],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian Chromium driven by Playwright."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


async def wait_playlist(url: str, deadline_s: float = START_TIMEOUT_S) -> str:
    """The playlist at ``url`` once it answers 200 and names at least one segment."""
    async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(deadline_s):
        while True:
            response = await http.get(url)
            if response.status_code == 200 and "#EXTINF" in response.text:
                return response.text
            await asyncio.sleep(0.1)
