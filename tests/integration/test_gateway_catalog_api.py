"""The catalog's HTTP routes, through ``gateway.app.create_app`` with its real lifespan.

Real NATS, real database (SQLite and PostgreSQL), real accounts and tokens: users
register through the API (which publishes ``user.registered``), the rest of the
history is published as the other components would.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from nats.js import JetStreamContext

import gateway.app as app_module
from common.settings import Settings
from events.catalog import Event, StatsViewers
from gateway.api import catalog as catalog_api
from gateway.api import stats as stats_api
from gateway.projections import STATE_KEY, Projections, projections_lifespan
from tests.fixtures.gateway import GatewayUser, register_user, running_gateway
from tests.integration.test_gateway_catalog import publish, wait_for_checkpoints, wait_until
from tests.unit.test_projection_scenario import PAGED_VIDEOS, scenario

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"


@dataclass
class Catalog:
    """A running gateway whose catalog holds the scenario."""

    app: Litestar
    client: httpx.AsyncClient
    js: JetStreamContext
    users: dict[str, GatewayUser]
    events: list[Event]

    @property
    def projections(self) -> Projections:
        projections: Projections = self.app.state[STATE_KEY]
        return projections


def wire(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the lead adds to gateway/app.py (a no-op once it is there)."""
    handlers = [*catalog_api.routers, *stats_api.routers]
    missing = [h for h in handlers if h not in app_module.ROUTE_HANDLERS]
    monkeypatch.setattr(app_module, "ROUTE_HANDLERS", [*app_module.ROUTE_HANDLERS, *missing])
    if projections_lifespan not in app_module.LIFESPAN_HOOKS:
        monkeypatch.setattr(
            app_module, "LIFESPAN_HOOKS", [*app_module.LIFESPAN_HOOKS, projections_lifespan]
        )


@contextlib.asynccontextmanager
async def started_catalog(
    settings: Settings,
    database_url: str,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Catalog]:
    """``create_app`` running, three registered users, the scenario projected."""
    wire(monkeypatch)
    gateway_settings = msgspec.structs.replace(settings, database_url=database_url)
    async with running_gateway(gateway_settings) as (app, client):
        users = {name: await register_user(client, name) for name in ("alice", "bob", "carol")}
        ids = {name: (u.id, u.stream_id) for name, u in users.items()}
        events = scenario(users=ids, registrations=False)
        projections: Projections = app.state[STATE_KEY]
        await wait_for_checkpoints(projections.sessions, await publish(js, events))
        yield Catalog(app, client, js, users, events)


@pytest.fixture
async def catalog(
    settings: Settings,
    database_url: str,
    event_streams: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Catalog]:
    async with started_catalog(settings, database_url, event_streams, monkeypatch) as running:
        yield running


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


# --- live channels ----------------------------------------------------------------------


async def test_live_channels_with_viewers_newest_state(catalog: Catalog) -> None:
    alice, bob = catalog.users["alice"], catalog.users["bob"]
    # This gateway's own count (the helper HLS and chat will call) and another one's.
    await catalog.projections.report_viewers(alice.stream_id, 3)
    await catalog.projections.publisher.publish(
        StatsViewers(stream_id=alice.stream_id, gateway_id="gw-other", viewers=4)
    )

    async def alice_has_viewers() -> bool:
        live = (await catalog.client.get("/api/v2/streams/live")).json()
        return bool(live) and live[0]["viewers"] >= 7

    await wait_until(alice_has_viewers, "alice's viewers in /streams/live")
    live = (await catalog.client.get("/api/v2/streams/live")).json()
    assert [c["username"] for c in live] == ["alice", "bob"]  # most watched first
    first = live[0]
    assert first["stream_id"] == alice.stream_id
    assert first["title"] == "Evening show"
    assert first["viewers"] == 7
    assert first["thumbnail_url"] == "/vod/v-rec-1/poster.jpg"  # the last recording's poster
    assert first["playback_url"] == f"/live/{alice.stream_id}/index.m3u8"
    assert first["live_thumbnail_url"] == f"/live/{alice.stream_id}/thumbnail.jpg"
    assert first["started_at"] is not None
    assert live[1]["stream_id"] == bob.stream_id
    assert live[1]["thumbnail_url"] is None

    limited = (await catalog.client.get("/api/v2/streams/live", params={"limit": 1})).json()
    assert len(limited) == 1
    assert_problem(await catalog.client.get("/api/v2/streams/live", params={"limit": 0}), 400)


async def test_a_channel_with_its_live_state_and_stats(catalog: Catalog) -> None:
    alice, carol = catalog.users["alice"], catalog.users["carol"]
    body = (await catalog.client.get(f"/api/v2/streams/{alice.stream_id}")).json()
    assert (body["username"], body["live"], body["title"], body["description"]) == (
        "alice",
        True,
        "Evening show",
        "live!",
    )
    assert (body["width"], body["height"], body["fps"]) == (1920, 1080, 60.0)
    assert body["chat_channel"] == f"chat:{alice.stream_id}"
    stats = body["stats"]
    assert stats["live"] is True
    assert stats["uptime_s"] > 0
    assert stats["session_id"] == "sess-a2"

    offline = (await catalog.client.get(f"/api/v2/streams/{carol.stream_id}")).json()
    assert offline["live"] is False
    assert offline["stats"]["uptime_s"] == 0

    assert_problem(await catalog.client.get("/api/v2/streams/no-such-channel"), 404)
    assert_problem(await catalog.client.get("/api/v2/streams/" + "x" * 200), 400)
    # The static routes beside /streams/{stream_id} still win.
    assert_problem(await catalog.client.get("/api/v2/streams/key"), 401)


# --- videos -------------------------------------------------------------------------------


async def _all_pages(client: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v2/videos", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_videos_are_listed_newest_first_page_by_page(catalog: Catalog) -> None:
    pages = await _all_pages(catalog.client, limit=10)
    ready = PAGED_VIDEOS + 2  # carol's clips, alice's upload and her recording
    assert [len(p) for p in pages] == [10, 10, ready - 20]
    items = [v for page in pages for v in page]
    assert len({v["video_id"] for v in items}) == ready
    published = [v["published_at"] for v in items]
    assert published == sorted(published, reverse=True)
    assert {v["status"] for v in items} == {"ready"}
    assert items[0]["video_id"] == f"v-page-{PAGED_VIDEOS - 1:02d}"

    # An exact multiple: the last full page says there is no more.
    assert [len(p) for p in await _all_pages(catalog.client, limit=ready)] == [ready]
    alice_pages = await _all_pages(catalog.client, user="alice", limit=2)
    assert [[v["video_id"] for v in p] for p in alice_pages] == [["v-up-1", "v-rec-1"]]

    carol = catalog.users["carol"]
    by_name = await _all_pages(catalog.client, user="carol", limit=100)
    by_id = await _all_pages(catalog.client, user=carol.id, limit=100)
    assert by_name == by_id
    assert len(by_name[0]) == PAGED_VIDEOS
    assert {v["username"] for v in by_name[0]} == {"carol"}

    empty = (await catalog.client.get("/api/v2/videos", params={"user": "nobody"})).json()
    assert empty == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not a cursor!"},
        {"cursor": base64.urlsafe_b64encode(b'["yesterday", "v"]').decode()},
        {"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()},
        {"cursor": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "v"]').decode()},
        {"cursor": "x" * 600},
        {"limit": 0},
        {"limit": 101},
        {"limit": "ten"},
    ],
    ids=[
        "garbage",
        "bad-time",
        "not-a-pair",
        "naive-time",
        "too-long",
        "limit-0",
        "limit-101",
        "limit-nan",
    ],
)
async def test_bad_pagination_input_is_a_400_problem(
    catalog: Catalog, params: dict[str, Any]
) -> None:
    assert_problem(await catalog.client.get("/api/v2/videos", params=params), 400)


async def test_one_video_in_each_state(catalog: Catalog) -> None:
    ready = (await catalog.client.get("/api/v2/videos/v-up-1")).json()
    assert (ready["status"], ready["title"], ready["username"], ready["progress"]) == (
        "ready",
        "Cats (final)",
        "alice",
        100.0,
    )
    assert ready["poster_url"] == "/vod/v-up-1/poster.jpg"
    assert ready["playback_url"] == "/vod/v-up-1/master.m3u8"
    processing = (await catalog.client.get("/api/v2/videos/v-up-4")).json()
    assert (processing["status"], processing["progress"], processing["playback_url"]) == (
        "processing",
        30.0,
        None,
    )
    failed = (await catalog.client.get("/api/v2/videos/v-up-2")).json()
    assert (failed["status"], failed["error"]) == ("failed", "not decodable")
    assert_problem(await catalog.client.get("/api/v2/videos/v-up-3"), 404)  # deleted
    assert_problem(await catalog.client.get("/api/v2/videos/nope"), 404)


async def test_only_the_owner_deletes_a_video(catalog: Catalog) -> None:
    alice, bob = catalog.users["alice"], catalog.users["bob"]
    client = catalog.client
    assert_problem(await client.delete("/api/v2/videos/v-up-1"), 401)
    assert_problem(await client.delete("/api/v2/videos/v-up-1", headers=bob.headers), 403)
    assert_problem(await client.delete("/api/v2/videos/nope", headers=alice.headers), 404)

    response = await client.delete("/api/v2/videos/v-up-1", headers=alice.headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"video_id": "v-up-1", "status": "deleting"}

    async def gone() -> bool:
        return (await client.get("/api/v2/videos/v-up-1")).status_code == 404

    await wait_until(gone, "the projection to apply video.deleted")
    listed = [v["video_id"] for p in await _all_pages(client, user="alice") for v in p]
    assert listed == ["v-rec-1"]
    assert_problem(await client.delete("/api/v2/videos/v-up-1", headers=alice.headers), 404)


async def test_the_routes_are_in_the_openapi_document(catalog: Catalog) -> None:
    schema = (await catalog.client.get("/schema/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/api/v2/streams/live",
        "/api/v2/streams/{stream_id}",
        "/api/v2/streams/{stream_id}/stats",
        "/api/v2/stats/live",
        "/api/v2/videos",
        "/api/v2/videos/{video_id}",
    ):
        assert path in paths, path
    assert "delete" in paths["/api/v2/videos/{video_id}"]
    components = schema["components"]["schemas"]
    assert {"VideoPage", "VideoOut", "LiveChannelOut", "ChannelOut", "LiveStats"} <= {
        name.rsplit("_", 1)[-1] for name in components
    }
