"""The newcomer's path in a real browser: ``videopick demo`` against the running platform,
then http://…/ shows the demo channel live and the demo clip, and both play.

Saves ``demo-home``, ``demo-watch`` and ``demo-video`` screenshots (docs/screenshots/):
what a newcomer sees a minute after ``make run`` and ``videopick demo``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import Stack
from tests.browser.helpers import new_context, wait_js
from tests.fixtures.platform import REPO_ROOT

pytestmark = pytest.mark.e2e

LIVE_S = 40  # long enough to look at the live after the clip is ready on a busy box
LINE_TIMEOUT_S = 240.0
PLAY_TIMEOUT_MS = 45_000


def _wait_line(out: Path, pattern: str, demo: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while (found := re.search(pattern, out.read_text())) is None:
        assert demo.poll() is None or time.monotonic() < deadline, out.read_text()
        assert time.monotonic() < deadline, f"no {pattern!r} in:\n{out.read_text()}"
        time.sleep(0.3)
    return found.group(1)


def _plays(page: Page) -> None:
    """currentTime moves forward by a second: the media really plays."""
    video = "document.getElementById('video')"
    wait_js(page, f"{video}.currentTime > 0.5", timeout_ms=PLAY_TIMEOUT_MS)
    start = page.evaluate(f"{video}.currentTime")
    wait_js(page, f"{video}.currentTime > {start} + 1.0", timeout_ms=PLAY_TIMEOUT_MS)


def test_a_newcomer_sees_the_demo_live_and_its_video(
    stack: Stack, browser: Browser, screenshot: Callable[[Page, str], Path], tmp_path: Path
) -> None:
    out = tmp_path / "demo.out"
    args = ["--gateway", stack.base_url, "--duration", str(LIVE_S)]
    with out.open("wb") as stdout:
        demo = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "demo", *args],
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    context = new_context(browser, stack.base_url)
    try:
        stream_id = _wait_line(out, r"/watch/(\S+)", demo)
        page = context.new_page()
        watch_path = f"/watch/{stream_id}"
        page.goto(watch_path)
        _plays(page)
        screenshot(page, "demo-watch")

        video_id = _wait_line(out, r"VIDEO  \S+/v/(\S+)", demo)
        page.goto("/")
        assert page.locator(f"#live-list a[href='{watch_path}'] .badge.live").is_visible()
        assert page.locator(f"#video-list a[href='/v/{video_id}']").is_visible()
        screenshot(page, "demo-home")

        page.goto(f"/v/{video_id}")
        _plays(page)
        screenshot(page, "demo-video")
        assert demo.wait(LIVE_S + 60) == 0, out.read_text()
    finally:
        context.close()
        if demo.poll() is None:
            demo.kill()
            demo.wait()
