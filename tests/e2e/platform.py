"""The whole platform for end-to-end tests: ``videopick up`` on free ports, as test_up runs it.

:func:`running_platform` starts it in a child process with its own data folder, waits
until the gateway is ready, and on exit stops it with Ctrl-C (SIGINT) and checks that
no process it started is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from common.nats_server import free_port
from tests.e2e.test_up import STARTUP_TIMEOUT_S, _alive, _children_of

STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Platform:
    process: subprocess.Popen[bytes]
    http_port: int
    rtmp_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logs_tail(self, lines: int = 30) -> str:
        """The supervisor's log and the end of each component's: for failure messages."""
        parts = [f"== up.log\n{self.log()}"]
        for path in sorted((self.log_path.parent / "data" / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"== {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


@contextlib.contextmanager
def running_platform(folder: Path) -> Iterator[Platform]:
    nats_port, http_port, rtmp_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        VIDEOPICK_DATA_DIR=str(folder / "data"),
        VIDEOPICK_NATS_PORT=str(nats_port),
        VIDEOPICK_HTTP_PORT=str(http_port),
        VIDEOPICK_RTMP_PORT=str(rtmp_port),
        VIDEOPICK_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
        VIDEOPICK_RTMP_PUBLIC_URL=f"rtmp://127.0.0.1:{rtmp_port}/live",
    )
    env.pop("VIDEOPICK_NATS_URL", None)
    log_path = folder / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    platform = Platform(process, http_port, rtmp_port, log_path)
    descendants: set[int] = set()
    try:
        _wait_ready(platform)
        descendants = _children_of(process.pid)
        yield platform
    finally:
        descendants |= _children_of(process.pid)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    leftovers = [pid for pid in descendants if _alive(pid)]
    assert leftovers == [], f"left running: {leftovers}"


def _wait_ready(platform: Platform) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client() as http:
        while True:
            assert platform.process.poll() is None, platform.log()
            assert time.monotonic() < deadline, platform.log()
            try:
                if http.get(f"{platform.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
