"""The live path in a real browser: register → rotate and copy the stream key in the
studio → a PyAV publisher goes live with it → the watch page plays (currentTime
advances, LIVE badge, viewers ≥ 1), a page opened while offline starts by itself →
chat from a second browser context appears in the first within 1 s. Titles,
descriptions and chat carrying XSS payloads render as text."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import Stack
from tests.browser.helpers import (
    XSS_CHAT,
    XSS_DESCRIPTION,
    XSS_TITLE,
    Watcher,
    assert_inert,
    new_context,
    register,
    unique_name,
    wait_js,
)
from tests.browser.media import LivePublisher

pytestmark = pytest.mark.e2e

CHAT_DEADLINE_MS = 1000
LIVE_TIMEOUT_MS = 30_000

# Arrival time (Date.now()) of each chat line, recorded by the page itself.
RECORD_ARRIVALS = """() => {
  window.__arrivals = {};
  new MutationObserver(() => {
    for (const li of document.querySelectorAll('#chat-log li.message .text')) {
      if (!(li.textContent in window.__arrivals)) window.__arrivals[li.textContent] = Date.now();
    }
  }).observe(document.getElementById('chat-log'), { childList: true, subtree: true });
}"""


# Emoji effect sprites as they are added (they remove themselves when their animation ends).
RECORD_EFFECTS = """() => {
  window.__effects = [];
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) window.__effects.push(n.textContent);
  }).observe(document.getElementById('effects'), { childList: true });
}"""


def _playing(page: Page) -> None:
    """currentTime moves forward by a second or more, and the picture has a size."""
    wait_js(page, "document.getElementById('video').currentTime > 0.5", timeout_ms=LIVE_TIMEOUT_MS)
    start = page.evaluate("document.getElementById('video').currentTime")
    wait_js(
        page,
        f"document.getElementById('video').currentTime > {start} + 1.0",
        timeout_ms=LIVE_TIMEOUT_MS,
    )
    assert page.evaluate("document.getElementById('video').videoWidth") > 0


def test_go_live_watch_and_chat(
    stack: Stack, browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    streamer_ctx = new_context(browser, stack.base_url)
    viewer_ctx = new_context(browser, stack.base_url)
    streamer_watch, viewer_watch = Watcher(), Watcher()
    publisher: LivePublisher | None = None
    try:
        studio = streamer_watch.attach(streamer_ctx.new_page())
        register(studio, unique_name("streamer"))
        wait_js(studio, "document.getElementById('stream-key').value.length > 0")
        assert studio.get_attribute("#stream-key", "type") == "password"  # hidden at first
        assert studio.input_value("#rtmp-url") == stack.rtmp_url
        screenshot(studio, "studio")

        # Rotate (two presses, no dialog), reveal, copy: the clipboard has the new key.
        old_key = studio.input_value("#stream-key")
        studio.click("#rotate-key")
        studio.click("#rotate-key")
        wait_js(studio, f"document.getElementById('stream-key').value !== {old_key!r}")
        studio.click("#reveal-key")
        assert studio.get_attribute("#stream-key", "type") == "text"
        studio.click("#copy-key")
        wait_js(studio, "document.getElementById('key-status').textContent.includes('copied')")
        key = studio.evaluate("navigator.clipboard.readText()")
        assert key == studio.input_value("#stream-key")
        assert key != old_key

        studio.fill("#broadcast-title", XSS_TITLE)
        studio.fill("#broadcast-description", XSS_DESCRIPTION)
        studio.click("#go-live")
        wait_js(
            studio, "document.getElementById('broadcast-status').textContent.startsWith('Saved')"
        )
        watch_path = studio.get_attribute("#watch-link", "href")
        assert watch_path is not None
        assert watch_path.startswith("/watch/")

        # A viewer opens the channel while it is offline.
        viewer = viewer_watch.attach(viewer_ctx.new_page())
        register(viewer, unique_name("viewer"))
        viewer.goto(watch_path)
        assert viewer.is_visible("#offline")
        assert viewer.is_hidden("#live-badge")
        viewer.wait_for_selector("#chat-input:enabled")

        publisher = LivePublisher(f"{stack.rtmp_url}/{key}")
        publisher.start()

        # The offline page turns into playback by itself.
        viewer.wait_for_selector("#live-badge", state="visible", timeout=LIVE_TIMEOUT_MS)
        _playing(viewer)
        assert viewer.is_hidden("#offline")

        watch = streamer_watch.attach(streamer_ctx.new_page())
        watch.goto(watch_path)
        _playing(watch)
        assert watch.is_visible("#live-badge")
        wait_js(
            watch,
            "Number(document.getElementById('viewer-count').textContent) >= 1",
            timeout_ms=LIVE_TIMEOUT_MS,
        )
        # The title and description are the payloads, as text.
        assert watch.inner_text("#channel-title") == XSS_TITLE
        assert watch.inner_text("#channel-description") == XSS_DESCRIPTION
        assert publisher.error is None

        # Chat: the viewer sends, the streamer's page shows it within a second. Three
        # lines, judged by the median: one scheduling hiccup on a shared box is not
        # a regression (the benchmarks measure latency properly).
        watch.wait_for_selector("#chat-input:enabled")
        watch.evaluate(RECORD_ARRIVALS)
        latencies = []
        for text in (XSS_CHAT, "second line", "third line"):
            viewer.fill("#chat-input", text)
            sent_at = viewer.evaluate("Date.now()")
            viewer.press("#chat-input", "Enter")
            key = json.dumps(text)
            wait_js(watch, f"{key} in (window.__arrivals || {{}})", timeout_ms=10_000)
            latencies.append(watch.evaluate(f"window.__arrivals[{key}]") - sent_at)
            wait_js(viewer, "document.getElementById('chat-input').value === ''")
        print(f"chat latency, browser to browser (ms): {latencies}")
        assert statistics.median(latencies) <= CHAT_DEADLINE_MS, latencies
        line = watch.locator("#chat-log li.message").filter(has_text="bold?")
        assert line.locator(".text").inner_text() == XSS_CHAT

        # And the streamer answers; the viewer sees it too (history + live both work).
        watch.fill("#chat-input", "welcome!")
        watch.press("#chat-input", "Enter")
        viewer.wait_for_selector("#chat-log li.message .text:text-is('welcome!')")
        # Someone arriving later, logged out: the history is there, the input stays off.
        late_ctx = new_context(browser, stack.base_url)
        late = late_ctx.new_page()
        late.goto(watch_path)
        late.locator("#chat-log li.message .text").filter(has_text="welcome!").wait_for()
        assert late.locator("#chat-log li.message").first.locator(".text").inner_text() == XSS_CHAT
        assert late.is_disabled("#chat-input")
        assert "read-only" in late.inner_text("#chat-status")
        late_ctx.close()

        # A super chat (tier 2: pinned for 60 s) with effect emoji: highlighted and
        # pinned on the streamer's page, and the emoji float over the video.
        # The viewer tops up from the page (env=dev shows the button) and spends 100.
        viewer.wait_for_selector("#wallet-topup", state="visible")
        assert viewer.inner_text("#wallet-balance") == "0"
        viewer.click("#wallet-topup")
        wait_js(viewer, "document.getElementById('wallet-balance').textContent === '500'")
        watch.evaluate(RECORD_EFFECTS)
        viewer.fill("#chat-input", "great stream 🔥🔥🎉")
        viewer.fill("#chat-amount", "100")
        viewer.press("#chat-input", "Enter")
        superchat = watch.locator("#chat-log li.superchat").filter(has_text="great stream")
        superchat.wait_for(timeout=10_000)
        assert "100 credits" in superchat.inner_text()
        assert (
            watch.evaluate(
                "getComputedStyle(document.querySelector('#chat-log li.superchat'))"
                ".getPropertyValue('--sc-color').trim().toUpperCase()"
            )
            == "#00BFA5"
        )
        watch.locator("#pinned .pinned-line").filter(has_text="great stream").wait_for()
        wait_js(viewer, "document.getElementById('wallet-balance').textContent === '400'")
        wait_js(watch, "document.getElementById('wallet-balance').textContent === '100'")
        wait_js(watch, "window.__effects.length > 0")
        assert set(watch.evaluate("window.__effects")) <= {"🔥", "🎉"}
        screenshot(watch, "watch-live")
        viewer.set_viewport_size({"width": 390, "height": 844})  # a phone: chat below
        wait_js(viewer, "window.innerWidth === 390")
        chat_box = viewer.locator("#chat-log").bounding_box()
        video_box = viewer.locator("#video").bounding_box()
        assert chat_box is not None
        assert video_box is not None
        assert chat_box["y"] >= video_box["y"] + video_box["height"]
        screenshot(viewer, "watch-mobile")

        # Home lists the channel live, with its (escaped) title.
        home = streamer_watch.attach(streamer_ctx.new_page())
        home.goto("/")
        card = home.locator(f"#live-list a[href='{watch_path}']")
        assert card.locator(".badge.live").is_visible()
        assert XSS_TITLE in home.inner_text("#live-list")
        screenshot(home, "home-live")

        # The studio sees itself live.
        studio.wait_for_selector("#studio-live", state="visible", timeout=LIVE_TIMEOUT_MS)
        wait_js(
            studio,
            "document.getElementById('stat-bitrate').textContent !== '–'",
            timeout_ms=LIVE_TIMEOUT_MS,
        )
        # The sparklines are drawn from the polled stats.
        wait_js(
            studio,
            "(document.querySelector('#chart-bitrate polyline')?.getAttribute('points') || '')"
            ".split(' ').length >= 3",
        )
        # The viewer's super chat shows in the streamer's earnings.
        wait_js(
            studio,
            "document.getElementById('earnings-total').textContent === '100'",
            timeout_ms=15_000,
        )
        assert "great stream" in studio.inner_text("#earnings tbody")
        studio.click("#reveal-key")  # hide the key again before the picture is taken
        screenshot(studio, "studio-live")

        # Moderation is typed in the chat: the streamer's /clear empties every viewer's log.
        watch.fill("#chat-input", "/clear")
        watch.press("#chat-input", "Enter")
        viewer.locator("#chat-log li.system").filter(has_text="cleared").wait_for()
        assert viewer.locator("#chat-log li.message").count() == 0

        for page, watcher in (
            (watch, streamer_watch),
            (viewer, viewer_watch),
            (home, streamer_watch),
        ):
            assert_inert(page, watcher)
        assert streamer_watch.csp == []
        assert viewer_watch.csp == []
    finally:
        if publisher is not None:
            publisher.stop()
        streamer_ctx.close()
        viewer_ctx.close()
    # Every page also ran without an uncaught error.
    assert streamer_watch.errors == []
    assert viewer_watch.errors == []
    time.sleep(0)  # keep the publisher's close ordered before the stack's shutdown
