"""The web routes without a browser (in-process gateway, real NATS and database):
pages are HTML under the CSP, user strings are escaped by the server, unknown ids get a
404 page, and the studio's ``/api/v2/me/videos`` needs a token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import httpx
import pytest

from gateway.web.templating import format_duration
from tests.browser.helpers import XSS_DESCRIPTION, XSS_TITLE
from tests.fixtures.gateway import GatewayUser

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0:00"), (59.4, "0:59"), (61, "1:01"), (3725, "1:02:05")]
)
def test_durations_read_like_a_player(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


async def test_pages_are_html_without_inline_script(gateway: httpx.AsyncClient) -> None:
    for path in ("/", "/login", "/register", "/upload", "/studio", "/logout"):
        response = await gateway.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        scripts = re.findall(r"<script\b[^>]*>", response.text)
        assert scripts, path
        assert all("src=" in tag for tag in scripts), scripts
    for path in ("/watch/nobody", "/v/nothing"):
        response = await gateway.get(path)
        assert response.status_code == 404
        assert "Not found" in response.text


async def test_titles_and_descriptions_are_escaped_by_the_server(
    gateway: httpx.AsyncClient, gateway_user: Callable[[str], Awaitable[GatewayUser]]
) -> None:
    user = await gateway_user("escaper")
    response = await gateway.post(
        "/api/v2/streams/start",
        json={"title": XSS_TITLE, "description": XSS_DESCRIPTION},
        headers=user.headers,
    )
    assert response.status_code == 200
    page = ""
    for _ in range(200):  # the catalog is a projection: it catches up in a moment
        response = await gateway.get(f"/watch/{user.stream_id}")
        if response.status_code == 200 and "onerror" in response.text:
            page = response.text
            break
        await asyncio.sleep(0.05)
    assert page, "the channel never reached the catalog"
    assert "<img src=x" not in page
    assert "<svg" not in page
    assert "<script>alert" not in page
    assert "&lt;img src=x onerror=&#34;document.body.dataset.pwned=1&#34;&gt;" in page
    assert "&lt;/p&gt;&lt;svg onload=alert(2)&gt;" in page


async def test_my_videos_needs_a_token(
    gateway: httpx.AsyncClient, gateway_user: Callable[[str], Awaitable[GatewayUser]]
) -> None:
    assert (await gateway.get("/api/v2/me/videos")).status_code == 401
    user = await gateway_user("creator")
    response = await gateway.get("/api/v2/me/videos", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == []
