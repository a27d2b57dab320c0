"""Browser tests: the whole platform (``videopick up``) and Debian's Chromium.

- ``stack``: ``python -m common.cli up`` on free ports with its own data folder and
  nats-server, shared by the browser tests (package scope: it stops when they are
  done, not at the end of the whole run). Stopped with SIGINT, as Ctrl-C does, so
  every child goes too.
- ``browser``: headless ``/usr/bin/chromium`` through Playwright (NEVER
  ``playwright install``: it downloads a browser). The system-deps script installs
  Chromium; in CI a missing binary fails the run, elsewhere it skips. Package scope
  too, for a second reason: Playwright's sync API keeps its own event loop running in
  the main thread while it is open, and pytest-asyncio cannot run async tests beside
  it (the async web route tests live in tests/integration/test_web_routes.py).
- ``screenshot``: saves a page to ``docs/screenshots/<name>.png`` (committed, the
  README links them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from common.nats_server import free_port
from gateway.web.assets import vendor_present

CHROMIUM = "/usr/bin/chromium"
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
STARTUP_TIMEOUT_S = 90.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The VOD test presses no play button; a real viewer's click does the same.
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass(frozen=True)
class Stack:
    base_url: str
    rtmp_url: str  # rtmp://127.0.0.1:PORT/live
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI runs `make test`, which installs it)")
    pytest.skip(why)


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client() as http:
        while True:
            if process.poll() is not None:
                raise AssertionError("videopick up exited:\n" + log_path.read_text())
            try:
                if http.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the stack did not get ready:\n" + log_path.read_text())
            time.sleep(0.3)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require(vendor_present(), "the web client's npm libraries are missing: run `make install`")
    root = tmp_path_factory.mktemp("stack")
    http_port, rtmp_port, nats_port = free_port(), free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    rtmp_url = f"rtmp://127.0.0.1:{rtmp_port}/live"
    env = dict(
        os.environ,
        VIDEOPICK_DATA_DIR=str(root / "data"),
        VIDEOPICK_HTTP_PORT=str(http_port),
        VIDEOPICK_RTMP_PORT=str(rtmp_port),
        VIDEOPICK_NATS_PORT=str(nats_port),
        # The chat WebSocket accepts the page's own origin: public_url must be it.
        VIDEOPICK_PUBLIC_URL=base_url,
        VIDEOPICK_RTMP_PUBLIC_URL=rtmp_url,
        # The browser tests do not watch recordings; spare the two shared cores.
        VIDEOPICK_TRANSCODE_RECORDINGS="false",
    )
    env.pop("VIDEOPICK_NATS_URL", None)
    log_path = root / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "up"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(process, base_url, log_path)
        yield Stack(base_url=base_url, rtmp_url=rtmp_url, log_path=log_path)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="package")
def playwright_session() -> Iterator[Playwright]:
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/install-system-deps.sh")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="package")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    chromium = playwright_session.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def screenshot() -> Callable[[Page, str], Path]:
    def save(page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return save
