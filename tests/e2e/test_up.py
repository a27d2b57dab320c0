"""`videopick up` brings the platform up and Ctrl-C leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nats
import pytest

from common.components import available_components
from common.nats_server import free_port

pytestmark = pytest.mark.e2e

STARTUP_TIMEOUT_S = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _children_of(pid: int) -> set[int]:
    """Every descendant pid (children run in their own sessions, so walk /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


async def _stream_names(url: str) -> set[str]:
    client = await nats.connect(url)
    try:
        return {str(info.config.name) for info in await client.jetstream().streams_info()}
    finally:
        await client.close()


def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    nats_port, http_port, rtmp_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        VIDEOPICK_DATA_DIR=str(tmp_path / "data"),
        VIDEOPICK_NATS_PORT=str(nats_port),
        VIDEOPICK_HTTP_PORT=str(http_port),
        VIDEOPICK_RTMP_PORT=str(rtmp_port),
    )
    env.pop("VIDEOPICK_NATS_URL", None)
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while b"VideoPick is running" not in log_path.read_bytes():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)

        # NATS with the catalog's streams, and the database file, are there.
        names = asyncio.run(_stream_names(f"nats://127.0.0.1:{nats_port}"))
        assert {"ACCOUNTS", "STREAMS", "CHAT", "DEAD_LETTERS"} <= names
        assert (tmp_path / "data" / "videopick.db").exists()

        components = available_components()
        if "gateway" in components:
            with httpx.Client() as http:
                while True:
                    try:
                        response = http.get(f"http://127.0.0.1:{http_port}/healthz")
                        if response.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)

        descendants = _children_of(process.pid)
        assert len(descendants) >= 1 + len(components)  # nats-server + each component
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, log_path.read_text()
    leftovers = [pid for pid in descendants if _alive(pid)]
    assert leftovers == [], f"left running: {leftovers}"
