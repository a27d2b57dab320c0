"""What the browser tests do often: register through the page, watch for XSS, time chat."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from playwright.sync_api import Browser, BrowserContext, Dialog, Page

# Owncast's and OWASP's usual suspects: each must come out as the same text, inert.
XSS_TITLE = '<img src=x onerror="document.body.dataset.pwned=1">"><script>alert(1)</script>'
XSS_DESCRIPTION = "</p><svg onload=alert(2)><iframe src=javascript:alert(3)>"
XSS_CHAT = "<img src=x onerror=alert(4)><b>bold?</b> {{7*7}} ${7*7}"
INJECTED = "img[src='x'], svg[onload], iframe, script:not([src])"


@dataclass
class Watcher:
    """Records dialogs (alert/confirm/prompt) and page errors: an XSS that fires shows up."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Page:
        def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                self.csp.append(message.text)
                if message.type == "error" and "Content Security Policy" in message.text
                else None
            ),
        )
        return page


def new_context(browser: Browser, base_url: str) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    return context


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def register(page: Page, username: str, password: str = "correct horse battery") -> None:
    """Through the register page; it lands on the studio."""
    page.goto("/register")
    page.fill("#username", username)
    page.fill("#email", f"{username}@example.com")
    page.fill("#password", password)
    page.click("#auth-submit")
    page.wait_for_url("**/studio")


def assert_inert(page: Page, watcher: Watcher) -> None:
    assert page.locator(INJECTED).count() == 0, page.content()
    assert page.evaluate("document.body.dataset.pwned") is None
    assert watcher.dialogs == []


def wait_js(page: Page, expression: str, *, timeout_ms: float = 10_000) -> None:
    """Poll a JS expression until truthy. (Playwright's wait_for_function compiles its
    predicate with eval, which our CSP rightly refuses; page.evaluate goes through the
    DevTools protocol and is not subject to it.)"""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms} ms waiting for: {expression}")
        page.wait_for_timeout(50)
