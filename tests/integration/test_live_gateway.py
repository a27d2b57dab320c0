"""LL-HLS delivery from events on a real JetStream, across gateway processes.

Gateway A is up before the broadcast and follows it live; gateway B starts mid-stream
and catches up from JetStream. Both must serve the same playlist (multi-gateway), the
playlist must keep the LL-HLS rules, blocking reload must return as soon as the part
is published, and the media it names must play.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import av
import httpx
import pytest
from faststream.nats import NatsBroker
from litestar import Litestar
from litestar.datastructures import State
from nats.js import JetStreamContext

from common.settings import Settings
from common.store.local import LocalStore
from events.broker import create_broker
from gateway.errors import exception_handlers
from gateway.live import LiveService, routers, start_live, stop_live
from gateway.live.playlist import render
from ingest.packager import create_packaging, flvfile
from ingest.packager.testmedia import make_flv
from tests.unit.test_llhls_playlist import validate_ll_hls

pytestmark = pytest.mark.integration

STREAM, SESSION = "chan-gw", "sess-gw"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flv(tmp_path_factory.mktemp("flv") / "av.flv", seconds=6, gop=30)


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="ingest-test")
    await broker.start()
    yield broker
    await broker.stop()


async def until(condition: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def client_for(live: LiveService) -> httpx.AsyncClient:
    app = Litestar(
        route_handlers=routers, exception_handlers=exception_handlers(), state=State({"live": live})
    )
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=cast(Any, app)), base_url="http://gw"
    )


def last_part(live: LiveService) -> tuple[int, int]:
    session = live.state.playlist(STREAM)
    if session is None:
        return (-1, -1)
    nxt = session.last_sequence + 1
    return (nxt, len(session.listed_parts(nxt)) - 1)


async def test_two_gateways_serve_the_same_playlist(
    settings: Settings,
    broker: NatsBroker,
    local_store: LocalStore,
    event_streams: JetStreamContext,
    media: Path,
) -> None:
    gateway_a = await start_live(settings, local_store)
    packaging = create_packaging(settings, broker, local_store)
    sink = packaging.create_session_sink(STREAM, SESSION, "user-1")
    gateway_b: LiveService | None = None
    try:
        # The first 3 s, then gateway B starts and catches up from JetStream.
        flvfile.replay(media, sink, stop_ms=3000, close_reason=None)
        await until(lambda: gateway_a.state.playlist(STREAM) is not None, "stream.started at A")
        await until(lambda: last_part(gateway_a)[0] >= 2, "2 s of segments at A")
        await asyncio.sleep(0.3)  # let the packager drain what it holds
        gateway_b = await start_live(settings, local_store)
        b = gateway_b

        def same_playlist() -> bool:
            # On a slow host the packager may still hand out a part: both hear it.
            playlist_a, playlist_b = gateway_a.state.playlist(STREAM), b.state.playlist(STREAM)
            return (
                playlist_a is not None
                and playlist_b is not None
                and (render(playlist_b) == render(playlist_a))
            )

        await until(same_playlist, "B's playlist, caught up from the log, to match A's")

        # Blocking reload at A for the part after the last one: answered when it lands.
        msn, index = last_part(gateway_a)
        async with client_for(gateway_a) as http:
            request = asyncio.create_task(
                http.get(f"/live/{STREAM}/index.m3u8?_HLS_msn={msn}&_HLS_part={index + 1}")
            )
            await asyncio.sleep(0.3)
            assert not request.done()
            flvfile.replay(media, sink, start_ms=3000, close_reason=None)
            response = await asyncio.wait_for(request, 10)
        assert response.status_code == 200
        assert f'part{msn}.{index + 1}.m4s"' in response.text or f"seg{msn}.m4s" in response.text
        validate_ll_hls(response.text)

        sink.close("publisher_left")
        await asyncio.wait_for(sink.wait_closed(), 30)
        await until(
            lambda: all(
                (p := g.state.playlist(STREAM)) is not None and p.ended for g in (gateway_a, b)
            ),
            "stream.ended at both gateways",
        )
        final_a, final_b = gateway_a.state.playlist(STREAM), b.state.playlist(STREAM)
        assert final_a is not None
        assert final_b is not None
        text = render(final_a)
        assert render(final_b) == text
        assert text.endswith("#EXT-X-ENDLIST\n")
        validate_ll_hls(text)

        # What the playlist names is served and plays: init + every segment.
        async with client_for(b) as http:
            init = (await http.get(f"/live/{STREAM}/{SESSION}/init.mp4")).content
            uris = re.findall(r"^(\S+\.m4s)$", text, re.MULTILINE)
            body = init + b"".join(
                [(await http.get(f"/live/{STREAM}/{uri}")).content for uri in uris]
            )
        with av.open(io.BytesIO(body), mode="r", format="mp4") as container:
            frames = len(list(container.decode(container.streams.video[0])))
        assert frames == 180
    finally:
        await stop_live(gateway_a)
        if gateway_b is not None:
            await stop_live(gateway_b)


async def test_a_fresh_gateway_knows_ended_and_unknown_streams(
    settings: Settings,
    broker: NatsBroker,
    local_store: LocalStore,
    event_streams: JetStreamContext,
    media: Path,
) -> None:
    packaging = create_packaging(settings, broker, local_store)
    sink = packaging.create_session_sink("chan-old", "sess-old", "user-2")
    flvfile.replay(media, sink, stop_ms=1500)
    await asyncio.wait_for(sink.wait_closed(), 30)
    live = await start_live(settings, local_store)
    try:
        async with client_for(live) as http:
            ended = await http.get("/live/chan-old/index.m3u8")
            assert ended.status_code == 200
            assert ended.text.endswith("#EXT-X-ENDLIST\n")
            live.state.ended_grace_s = 0
            offline = await http.get("/live/chan-old/index.m3u8")
            assert offline.status_code == 404
            assert offline.json()["type"] == "/problems/live-stream-offline"
            unknown = await http.get("/live/never-live/index.m3u8")
            assert unknown.json()["type"] == "/problems/live-stream-not-found"
    finally:
        await stop_live(live)
