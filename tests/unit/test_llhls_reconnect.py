"""The gateway side of reconnects, part retention and thumbnails: playlist text and route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.datastructures import State

from common.store.local import LocalStore
from events.catalog import StreamEnded
from events.envelope import Event
from gateway.errors import exception_handlers
from gateway.live import routers
from gateway.live.playlist import render
from gateway.live.service import LiveService
from gateway.live.state import LiveState, SessionPlaylist
from tests.unit.test_llhls_playlist import PARTS_PER_SEGMENT, broadcast, part, segment

pytestmark = pytest.mark.unit


def with_reconnect_at(events: list[Event], sequence: int) -> list[Event]:
    """Flag the first segment (and its first part) of a reconnect, as ingest does."""
    return [
        msgspec.structs.replace(event, discontinuity=True)
        if getattr(event, "sequence", None) == sequence and getattr(event, "part_index", 0) == 0
        else event
        for event in events
    ]


def playlist_of(events: list[Event], window_s: float = 30.0) -> SessionPlaylist:
    state = LiveState(window_s=window_s)
    for event in events:
        state.apply(event)
    session = state.session("sess")
    assert session is not None
    return session


def test_a_reconnect_is_a_discontinuity_before_its_parts_and_segment() -> None:
    lines = render(playlist_of(with_reconnect_at(broadcast(6), 4))).splitlines()
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1].startswith("#EXT-X-PROGRAM-DATE-TIME:")
    assert lines[at + 2].startswith('#EXT-X-PART:DURATION=0.23333,URI="sess/part4.0.m4s"')
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:0" in lines  # nothing trimmed yet


def test_open_segment_after_a_reconnect_carries_the_discontinuity() -> None:
    events = with_reconnect_at(broadcast(3, extra_parts=2), 3)
    lines = render(playlist_of(events)).splitlines()
    at = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[at + 1].startswith('#EXT-X-PART:DURATION=0.23333,URI="sess/part3.0.m4s"')
    assert lines[-1] == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="sess/part3.2.m4s"'


def test_discontinuity_sequence_counts_those_that_left_the_window() -> None:
    # A 6 s window of 1 s segments: by segment 12 the reconnect at 2 is trimmed away.
    text = render(playlist_of(with_reconnect_at(broadcast(12), 2), window_s=6.0))
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1" in text
    assert "#EXT-X-DISCONTINUITY\n" not in text


def test_old_parts_are_dropped_from_state_and_playlist() -> None:
    session = playlist_of(broadcast(20))
    # Kept for the last 4 target durations (2 s): 8 one-second segments' parts.
    assert sorted(session.parts) == list(range(12, 20))
    assert len(session.segments) == 20  # segments stay for the 30 s window
    text = render(session)
    assert "part11." not in text
    assert text.count("#EXT-X-PART:") == 6 * PARTS_PER_SEGMENT  # last 3 target durations


def test_an_ended_broadcast_lists_no_parts() -> None:
    events = [*broadcast(4), StreamEnded(stream_id="chan", session_id="sess", reason="timeout")]
    text = render(playlist_of(events))
    assert "#EXT-X-PART:" not in text
    assert "PRELOAD-HINT" not in text
    assert text.endswith("#EXT-X-ENDLIST\n")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, LocalStore]]:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    state = LiveState(window_s=30)
    for event in [*broadcast(1), part(1, 0), segment(1)]:
        state.apply(event)
    app = Litestar(
        route_handlers=routers,
        exception_handlers=exception_handlers(),
        state=State({"live": LiveService(state, store)}),
    )
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http, store
    await store.close()


async def test_thumbnail_route(client: tuple[httpx.AsyncClient, LocalStore]) -> None:
    http, store = client
    missing = await http.get("/live/chan/thumbnail.jpg")
    assert missing.status_code == 404
    assert missing.json()["type"] == "/problems/live-media-not-found"
    await store.put("live/chan/thumbnail.jpg", b"\xff\xd8first")
    first = await http.get("/live/chan/thumbnail.jpg")
    assert (first.status_code, first.content) == (200, b"\xff\xd8first")
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["cache-control"] == "public, max-age=5"
    # Overwritten by ingest: the next request sees the new picture (no media cache).
    await store.put("live/chan/thumbnail.jpg", b"\xff\xd8second")
    assert (await http.get("/live/chan/thumbnail.jpg")).content == b"\xff\xd8second"
    bad = await http.get("/live/..%2Fx/thumbnail.jpg")
    assert bad.status_code == 404
