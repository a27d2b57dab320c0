"""A broadcast's recording plays on its video page at once, with no transcode at all.

The platform runs with ``VIDEOPICK_TRANSCODE_RECORDINGS=false`` (the browser stack),
so what plays is the recording's own master playlist over the live segments. A PyAV
publisher goes live with a titled broadcast and stops; the video list API has the
recording ready with the broadcast's title and description, and ``/v/{video_id}``
plays it in Chromium (hls.js: currentTime advances, the picture has a size).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import Stack
from tests.browser.helpers import Watcher, new_context, register, unique_name, wait_js
from tests.browser.media import LivePublisher

pytestmark = pytest.mark.e2e

LIVE_S = 5.0
DEADLINE_S = 40.0


def _recording(stack: Stack, username: str) -> dict[str, Any] | None:
    response = httpx.get(f"{stack.base_url}/api/v2/videos", params={"user": username})
    response.raise_for_status()
    items = [v for v in response.json()["items"] if v["origin"] == "recording"]
    return items[0] if items else None


def test_a_recording_plays_on_its_video_page_without_a_transcode(
    stack: Stack, browser: Browser
) -> None:
    context = new_context(browser, stack.base_url)
    watcher = Watcher()
    publisher: LivePublisher | None = None
    try:
        studio = watcher.attach(context.new_page())
        username = unique_name("recorder")
        register(studio, username)
        wait_js(studio, "document.getElementById('stream-key').value.length > 0")
        key = studio.input_value("#stream-key")
        studio.fill("#broadcast-title", "Recorded live")
        studio.fill("#broadcast-description", "playable before any ladder")
        studio.click("#go-live")
        wait_js(
            studio, "document.getElementById('broadcast-status').textContent.startsWith('Saved')"
        )

        publisher = LivePublisher(f"{stack.rtmp_url}/{key}")
        publisher.start()
        time.sleep(LIVE_S)
        publisher.stop()  # a clean unpublish: the broadcast ends at once
        assert publisher.error is None, publisher.error
        publisher = None

        deadline = time.monotonic() + DEADLINE_S
        while (video := _recording(stack, username)) is None:
            assert time.monotonic() < deadline, stack.logs_tail()
            time.sleep(0.25)
        assert video["status"] == "ready"
        assert (video["title"], video["description"]) == (
            "Recorded live",
            "playable before any ladder",
        )
        assert video["playback_url"] == f"/vod/{video['video_id']}/master.m3u8"
        detail = httpx.get(f"{stack.base_url}/api/v2/videos/{video['video_id']}")
        assert detail.json()["status"] == "ready"

        page = watcher.attach(context.new_page())
        page.goto(f"/v/{video['video_id']}")
        element = "document.getElementById('video')"
        wait_js(page, f"{element}.currentTime > 0.5", timeout_ms=DEADLINE_S * 1000)
        start = page.evaluate(f"{element}.currentTime")
        wait_js(page, f"{element}.currentTime > {start} + 1.0", timeout_ms=DEADLINE_S * 1000)
        assert page.evaluate(f"{element}.videoWidth") == 320
        assert watcher.errors == []
    finally:
        if publisher is not None:
            publisher.stop()
        context.close()
