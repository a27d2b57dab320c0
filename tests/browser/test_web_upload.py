"""The upload path in a real browser: tus-js-client sends a clip in 1 MiB PATCHes; one
PATCH is cut (tus retries by itself), later the network goes down and the page is
reloaded: choosing the same file resumes from the server's offset (no new upload).
Then the page follows the transcode until ready, and the video page plays it with
scrub previews. Title and description are XSS payloads and stay text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser.conftest import Stack
from tests.browser.helpers import (
    XSS_DESCRIPTION,
    XSS_TITLE,
    Watcher,
    assert_inert,
    register,
    unique_name,
    wait_js,
)
from tests.browser.media import make_clip

pytestmark = pytest.mark.e2e

TRANSCODE_TIMEOUT_MS = 240_000
CUT_PATCH = 2  # aborted once; tus-js-client retries on its own
OUTAGE_PATCH = 5  # from here on every request fails, until the page is reloaded


@dataclass
class Network:
    """A switchable network between the page and /files/, with a log of what passed."""

    patches: int = 0
    outage: bool = False
    log: list[tuple[str, str]] = field(default_factory=list)  # (method, Upload-Offset)
    aborted: list[str] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        request = route.request
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == OUTAGE_PATCH:
                self.outage = True
            if self.patches == CUT_PATCH or self.outage:
                self.aborted.append(request.method)
                route.abort("internetdisconnected")
                return
        elif self.outage:
            self.aborted.append(request.method)
            route.abort("internetdisconnected")
            return
        self.log.append((request.method, request.headers.get("upload-offset", "")))
        route.continue_()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "resumable clip.mp4")


def test_upload_survives_a_cut_and_a_reload_then_plays(
    stack: Stack, browser: Browser, clip: Path, screenshot: Callable[[Page, str], Path]
) -> None:
    assert clip.stat().st_size > (OUTAGE_PATCH + 1) * 1024 * 1024
    context = browser.new_context(
        base_url=stack.base_url, viewport={"width": 1280, "height": 800}, color_scheme="dark"
    )
    watcher = Watcher()
    network = Network()
    try:
        page = watcher.attach(context.new_page())
        register(page, unique_name("uploader"))
        page.route(lambda url: "/files/" in url, network.handle)
        page.goto("/upload")
        page.wait_for_selector("#dropzone[data-ready]")
        page.fill("#upload-title", XSS_TITLE)
        page.fill("#upload-description", XSS_DESCRIPTION)
        page.set_input_files("#file-input", str(clip))

        # The cut PATCH was retried from the server's offset; then the outage began.
        for _ in range(1200):  # route handlers run while the page waits
            if network.outage:
                break
            page.wait_for_timeout(50)
        assert network.outage, network.log
        assert network.aborted[0] == "PATCH"
        assert [m for m, _ in network.log].count("POST") == 1
        assert "HEAD" in [m for m, _ in network.log]  # the retry asked for the offset
        before_reload = len(network.log)
        offsets = [int(o) for m, o in network.log if m == "PATCH"]
        assert offsets == sorted(offsets)
        assert offsets[-1] > 0

        # Reload with the network back: the same file resumes, no second upload.
        network.outage = False
        page.reload()
        page.wait_for_selector("#dropzone[data-ready]")
        wait_js(page, "document.getElementById('drop-help').textContent.includes('unfinished')")
        page.set_input_files("#file-input", str(clip))
        page.wait_for_selector("#transcode-block", state="visible", timeout=60_000)
        after = network.log[before_reload:]
        assert after, "nothing was sent after the reload"
        assert after[0][0] == "HEAD"  # asks the server where to go on
        assert "POST" not in [m for m, _ in after]
        resumed_at = int(next(o for m, o in after if m == "PATCH"))
        assert resumed_at >= (OUTAGE_PATCH - 2) * 1024 * 1024
        assert page.inner_text("#upload-percent") == "100"
        assert page.inner_text("#upload-speed").endswith("/s")

        # Transcoding progress until the video is ready.
        page.wait_for_selector("#video-link", state="visible", timeout=TRANSCODE_TIMEOUT_MS)
        assert page.inner_text("#transcode-state") == "ready"
        screenshot(page, "upload")

        page.click("#video-link")
        page.wait_for_url("**/v/*")
        wait_js(page, "document.getElementById('video').currentTime > 0.5", timeout_ms=30_000)
        assert page.inner_text("#video-title") == XSS_TITLE
        assert page.inner_text("#video-description") == XSS_DESCRIPTION
        assert page.get_attribute("#video", "poster")

        # Scrub previews: hovering the seek bar shows a tile of the sprite sheet.
        box = page.locator("#seek").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        page.wait_for_selector("#scrub", state="visible")
        style = page.evaluate("document.getElementById('scrub-frame').style.backgroundImage")
        assert "sprite.jpg" in style
        screenshot(page, "video")
        assert_inert(page, watcher)

        # The studio lists it as ready, the home page as a recent video.
        page.goto("/studio")
        page.wait_for_selector("#my-videos tbody tr")
        assert "ready" in page.inner_text("#my-videos tbody")
        assert XSS_TITLE in page.inner_text("#my-videos tbody")
        page.goto("/")
        assert XSS_TITLE in page.inner_text("#video-list")
        screenshot(page, "home")
        assert_inert(page, watcher)
        assert watcher.csp == []
        assert watcher.errors == []
    finally:
        context.close()
