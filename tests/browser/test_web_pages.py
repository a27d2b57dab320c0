"""Every page renders under the CSP (no inline script, no violation) and answers
unknown ids with a 404 page; the theme toggle switches and is remembered."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route

from tests.browser.conftest import Stack
from tests.browser.helpers import Watcher, new_context, register, unique_name, wait_js

pytestmark = pytest.mark.e2e

PAGES = ["/", "/login", "/register", "/upload", "/studio"]


def test_pages_render_under_the_csp(
    stack: Stack, browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    context = new_context(browser, stack.base_url)
    watcher = Watcher()
    page = watcher.attach(context.new_page())
    # Subscribe to file choosers before any navigation. A `filechooser` listener makes
    # Playwright send CDP Page.setInterceptFileChooserDialog without waiting for its
    # answer. With the listener added only by expect_file_chooser, Chromium sometimes
    # answered it after the Enter's key events (DEBUG=pw:protocol): the chooser opened
    # before interception was on and headless Chromium cancelled it unseen (5 of 12 and
    # 11 of 40 in a loop under load; 0 of 40 subscribed early). The navigations below
    # are round trips on the same session, so interception is on by the Enter.
    page.on("filechooser", lambda _chooser: None)
    try:
        for path in PAGES:
            response = page.goto(path)
            assert response is not None
            assert response.status == 200, path
            assert "unsafe-inline" not in (response.headers.get("content-security-policy") or "")
            page.wait_for_load_state("networkidle")
            assert page.locator("script:not([src])").count() == 0, path
        page.goto("/login")
        screenshot(page, "login")
        page.goto("/register")
        screenshot(page, "register")
        # Logged out, the studio and upload pages say so instead of failing.
        page.goto("/studio")
        page.wait_for_selector(".needs-login", state="visible")
        # The drop zone is a keyboard target too: Enter opens the file chooser.
        page.goto("/upload")
        page.wait_for_selector("#dropzone[data-ready]")
        page.focus("#dropzone")
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Enter")
        assert not chooser.value.is_multiple()
        for path in ("/watch/no-such-stream", "/v/no-such-video"):
            response = page.goto(path)
            assert response is not None
            assert response.status == 404
            assert "Not found" in page.inner_text("main")
        assert watcher.csp == []
        assert watcher.errors == []
    finally:
        context.close()


def test_theme_toggle_switches_and_is_remembered(stack: Stack, browser: Browser) -> None:
    context = browser.new_context(base_url=stack.base_url, color_scheme="light")
    page = context.new_page()
    try:
        page.goto("/")
        background = "getComputedStyle(document.body).backgroundColor"
        light = page.evaluate(background)
        page.keyboard.press("Tab")  # the skip link comes first: keyboard users get it
        assert page.evaluate("document.activeElement.className") == "skip"
        page.focus("#theme-toggle")
        page.keyboard.press("Enter")
        assert page.evaluate("document.documentElement.dataset.theme") == "dark"
        dark = page.evaluate(background)
        assert dark != light
        page.reload()
        assert page.evaluate(background) == dark
    finally:
        context.close()


def test_static_files_are_served_with_types(stack: Stack) -> None:
    with httpx.Client(base_url=stack.base_url) as http:
        for path, kind in [
            ("/static/js/watch.js", "javascript"),
            ("/static/css/app.css", "text/css"),
            ("/static/vendor/hls.min.js", "javascript"),
            ("/static/vendor/centrifuge.js", "javascript"),
            ("/static/vendor/tus.min.js", "javascript"),
        ]:
            response = http.get(path)
            assert response.status_code == 200, path
            assert kind in response.headers["content-type"], path
        assert http.get("/static/../gateway/app.py").status_code == 404


def test_login_keeps_the_token_and_logout_drops_it(stack: Stack, browser: Browser) -> None:
    name = unique_name("login")
    password = "a long enough password"
    with httpx.Client(base_url=stack.base_url) as http:
        response = http.post(
            "/api/v2/auth/register",
            json={"username": name, "email": f"{name}@example.com", "password": password},
        )
        assert response.status_code == 201
    context = new_context(browser, stack.base_url)
    page = context.new_page()
    try:
        page.goto("/login?next=//evil.example/")
        page.fill("#login", name)
        page.fill("#password", "wrong password")
        page.click("#auth-submit")
        page.wait_for_selector("#auth-error", state="visible")
        assert "wrong login or password" in page.inner_text("#auth-error")
        page.fill("#password", password)
        page.click("#auth-submit")
        page.wait_for_url(f"{stack.base_url}/studio")  # not to //evil.example
        assert page.inner_text("#who") == name
        token = page.evaluate("localStorage.getItem('videopick.token')")
        assert token.count(".") == 2  # a JWT
        page.click("#nav-logout")
        page.wait_for_url(f"{stack.base_url}/")
        assert page.evaluate("localStorage.getItem('videopick.token')") is None
        assert page.is_visible("#nav-login")
    finally:
        context.close()


def test_a_dropped_file_that_is_not_a_video_is_refused_clearly(
    stack: Stack, browser: Browser
) -> None:
    name = unique_name("dropper")
    with httpx.Client(base_url=stack.base_url) as http:
        response = http.post(
            "/api/v2/auth/register",
            json={
                "username": name,
                "email": f"{name}@example.com",
                "password": "drop it like it's hot",
            },
        )
        assert response.status_code == 201
        session = response.json()
    context = new_context(browser, stack.base_url)
    page = context.new_page()
    try:
        page.goto("/")
        page.evaluate(
            "([token, user]) => { localStorage.setItem('videopick.token', token);"
            " localStorage.setItem('videopick.user', JSON.stringify(user)); }",
            [session["access_token"], session["user"]],
        )
        page.goto("/upload")
        page.wait_for_selector("#dropzone[data-ready]")
        transfer = page.evaluate_handle(
            "() => { const t = new DataTransfer();"
            " const text = 'not a video '.repeat(5000);"
            " t.items.add(new File([text], 'notes.mp4', {type: 'video/mp4'}));"
            " return t; }"
        )
        page.dispatch_event("#dropzone", "dragover", {"dataTransfer": transfer})
        assert "over" in (page.get_attribute("#dropzone", "class") or "")
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
        page.wait_for_selector("#transcode-block", state="visible", timeout=30_000)
        wait_js(
            page,
            "document.getElementById('transcode-state').textContent.startsWith('rejected')",
            timeout_ms=60_000,
        )
        assert page.inner_text("#upload-name") == "notes.mp4"
        assert page.is_hidden("#video-link")
    finally:
        context.close()


def test_a_title_typed_while_the_studio_loads_is_kept(stack: Stack, browser: Browser) -> None:
    """The channel's saved title arrives after the page shows: what the user typed
    meanwhile stays (it used to be blanked, and the required title then kept Go live
    from submitting)."""
    context = new_context(browser, stack.base_url)
    page = context.new_page()
    held: list[Route] = []

    def hold_the_channel(route: Route) -> None:
        request = route.request
        if request.method == "GET" and not request.url.endswith("/key"):
            held.append(route)  # answered below, once the title is typed
        else:
            route.continue_()

    try:
        page.route(re.compile(r".*/api/v2/streams/[^/?]+$"), hold_the_channel)
        register(page, unique_name("typist"))
        wait_js(page, "document.getElementById('stream-key').value.length > 0")
        for _ in range(500):  # route handlers run while the page waits
            if held:
                break
            page.wait_for_timeout(10)
        assert held, "the studio never asked for its channel"
        page.fill("#broadcast-title", "Typed at once")
        # The studio asks for its live stats right after it has used the channel.
        with page.expect_request(lambda request: "/api/v2/stats/live" in request.url):
            held[0].continue_()
        assert page.input_value("#broadcast-title") == "Typed at once"
        page.click("#go-live")
        wait_js(page, "document.getElementById('broadcast-status').textContent.startsWith('Saved')")
    finally:
        context.close()
