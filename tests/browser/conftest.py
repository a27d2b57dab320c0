"""Browser tests: the whole platform (``videopick up``) and Debian's Chromium.

- ``stack``: ``videopick up`` on free ports (tests/fixtures/platform.py), shared by
  the browser tests (package scope: it stops when they are done, not at the end of the
  whole run).
- ``browser``: headless ``/usr/bin/chromium`` through Playwright (NEVER
  ``playwright install``: it downloads a browser). The system-deps script installs
  Chromium; in CI a missing binary fails the run, elsewhere it skips. Package scope
  too, for a second reason: Playwright's sync API keeps its own event loop running in
  the main thread while it is open, and pytest-asyncio cannot run async tests beside
  it (the async web route tests live in tests/integration/test_web_routes.py).
- ``screenshot``: saves a page to ``test-artifacts/screenshots/<name>.png`` on every
  run (git-ignored, CI keeps them). The README's copies in ``docs/screenshots/`` are
  refreshed on purpose: ``VIDEOPICK_TEST_SCREENSHOTS=docs/screenshots make test``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from gateway.web.assets import vendor_present
from tests.fixtures.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.platform import REPO_ROOT, Platform, running_platform

SCREENSHOTS = REPO_ROOT / os.environ.get(
    "VIDEOPICK_TEST_SCREENSHOTS", str(Path("test-artifacts") / "screenshots")
)

# The browser tests' name for the running platform (base_url, rtmp_url, logs_tail()).
Stack = Platform


def _require(condition: bool, why: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI runs `make test`, which installs it)")
    pytest.skip(why)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require(vendor_present(), "the web client's npm libraries are missing: run `make install`")
    folder = tmp_path_factory.mktemp("stack")
    # The browser tests do not watch recordings; spare the two shared cores.
    env = {"VIDEOPICK_TRANSCODE_RECORDINGS": "false"}
    with running_platform(folder, env=env) as platform:
        yield platform


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
