"""The live routes: playlists, blocking reload over HTTP, media objects, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State

from common.store.local import LocalStore
from events.catalog import StreamEnded
from gateway.errors import exception_handlers
from gateway.live import routers
from gateway.live.service import LiveService
from gateway.live.state import LiveState
from tests.unit.test_llhls_playlist import broadcast, part, segment

pytestmark = pytest.mark.unit


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveService]:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    state = LiveState(window_s=30)
    for event in broadcast(3, extra_parts=1):
        state.apply(event)
    await store.put("live/chan/sess/init.mp4", b"init-bytes")
    await store.put("live/chan/sess/seg0.m4s", bytes(range(100)))
    await store.put("live/chan/sess/part3.0.m4s", b"part-bytes")
    yield LiveService(state, store)
    await store.close()


@pytest.fixture
async def client(live: LiveService) -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar(
        route_handlers=routers,
        exception_handlers=exception_handlers(),
        state=State({"live": live}),
    )
    # httpx's ASGI transport runs the app on this test's event loop (litestar's
    # AsyncTestClient runs it on a portal thread, where blocking waits cannot be woken).
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def test_playlist(client: httpx.AsyncClient) -> None:
    response = await client.get("/live/chan/index.m3u8")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("#EXTM3U\n")
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="sess/part3.1.m4s"' in response.text


async def test_unknown_and_offline_streams(client: httpx.AsyncClient, live: LiveService) -> None:
    unknown = await client.get("/live/nobody/index.m3u8")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert unknown.json()["type"] == "/problems/live-stream-not-found"

    live.state.apply(StreamEnded(stream_id="chan", session_id="sess", reason="publisher_left"))
    ended = await client.get("/live/chan/index.m3u8")
    assert ended.status_code == 200
    assert ended.text.endswith("#EXT-X-ENDLIST\n")
    live.state.ended_grace_s = 0
    offline = await client.get("/live/chan/index.m3u8")
    assert offline.status_code == 404
    assert offline.json()["type"] == "/problems/live-stream-offline"
    assert "offline" in offline.json()["detail"]


@pytest.mark.parametrize(
    "query",
    ["_HLS_part=1", "_HLS_msn=abc", "_HLS_msn=9", "_HLS_msn=3&_HLS_part=40"],
)
async def test_bad_blocking_requests_are_400(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/live/chan/index.m3u8?{query}")
    assert response.status_code == 400
    assert response.json()["type"] == "/problems/bad-playlist-request"


async def test_blocking_reload_waits_for_the_part(
    client: httpx.AsyncClient, live: LiveService
) -> None:
    request = asyncio.create_task(client.get("/live/chan/index.m3u8?_HLS_msn=3&_HLS_part=1"))
    await asyncio.sleep(0.2)
    assert not request.done()
    live.state.apply(part(3, 1))
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert 'URI="sess/part3.1.m4s"' in response.text
    assert response.headers["cache-control"].startswith("public, max-age=")


async def test_blocked_too_long_is_503(client: httpx.AsyncClient, live: LiveService) -> None:
    session = live.state.playlist("chan")
    assert session is not None
    session.target_duration = 0  # no time at all to wait
    response = await client.get("/live/chan/index.m3u8?_HLS_msn=3&_HLS_part=2")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_media_objects(client: httpx.AsyncClient) -> None:
    init = await client.get("/live/chan/sess/init.mp4")
    assert init.status_code == 200
    assert init.content == b"init-bytes"
    assert init.headers["content-type"] == "video/mp4"
    assert init.headers["cache-control"] == "public, max-age=31536000, immutable"
    ranged = await client.get("/live/chan/sess/seg0.m4s", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206
    assert ranged.content == bytes(range(10, 20))
    assert ranged.headers["content-range"] == "bytes 10-19/100"
    suffix = await client.get("/live/chan/sess/seg0.m4s", headers={"Range": "bytes=-5"})
    assert suffix.content == bytes(range(95, 100))
    outside = await client.get("/live/chan/sess/seg0.m4s", headers={"Range": "bytes=200-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == "bytes */100"


@pytest.mark.parametrize(
    "path",
    ["/live/chan/sess/seg9.m4s", "/live/chan/sess/..%2Finit.mp4", "/live/chan/sess/x.mp4"],
)
async def test_missing_or_odd_media_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_preload_hinted_part_is_held_until_it_exists(
    client: httpx.AsyncClient, live: LiveService
) -> None:
    request = asyncio.create_task(client.get("/live/chan/sess/part3.1.m4s"))
    await asyncio.sleep(0.2)
    assert not request.done()
    await live.store.put("live/chan/sess/part3.1.m4s", b"next-part")
    live.state.apply(part(3, 1))
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert response.content == b"next-part"


async def test_segment_completion_wakes_segment_waiters(
    client: httpx.AsyncClient, live: LiveService
) -> None:
    request = asyncio.create_task(client.get("/live/chan/index.m3u8?_HLS_msn=3"))
    await asyncio.sleep(0.1)
    for index in range(1, 5):
        live.state.apply(part(3, index))
    assert not request.done()
    live.state.apply(segment(3))
    response = await asyncio.wait_for(request, 5)
    assert "sess/seg3.m4s" in response.text
