"""Channels: stream keys (show, rotate, stored only hashed/encrypted), start/stop, who may.

The authorization matrix: every /api/v2/streams route acts on the caller's own channel
only; user A never sees or changes anything of user B's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import pytest
from litestar import Litestar
from nats.js import JetStreamContext
from sqlalchemy import select, update

from common.settings import Settings
from events.catalog import ChannelKeyRotated, ChannelUpdated, StreamStopRequested
from gateway.auth.models import User
from gateway.channels.keys import stream_key_matches
from gateway.channels.models import Channel
from gateway.services import Services
from tests.fixtures.gateway import GatewayUser, register_user, running_gateway
from tests.integration.test_gateway_auth import read_events

pytestmark = pytest.mark.integration

UserFactory = Callable[[str], Awaitable[GatewayUser]]
PROTECTED = [
    ("GET", "/api/v2/streams/key"),
    ("POST", "/api/v2/streams/key/rotate"),
    ("POST", "/api/v2/streams/start"),
    ("POST", "/api/v2/streams/stop"),
    ("GET", "/api/v2/auth/me"),
]


async def _channel(app: Litestar, stream_id: str) -> Channel:
    services: Services = app.state.services
    async with services.sessions() as session:
        channel = await session.scalar(select(Channel).where(Channel.stream_id == stream_id))
    assert channel is not None
    return channel


async def test_key_shows_urls_and_stays_the_same_until_rotated(
    gateway: httpx.AsyncClient, gateway_app: Litestar, gateway_user: UserFactory
) -> None:
    alice = await gateway_user("alice")
    first = await gateway.get("/api/v2/streams/key", headers=alice.headers)
    assert first.status_code == 200
    body = first.json()
    settings: Settings = gateway_app.state.settings
    assert body["stream_id"] == alice.stream_id
    assert body["rtmp_url"] == settings.rtmp_public_url
    assert body["playback_url"] == f"{settings.public_url}/live/{alice.stream_id}/index.m3u8"
    assert body["chat_channel"] == f"chat:{alice.stream_id}"
    assert body["rotated"] is False
    key = body["stream_key"]
    assert len(key) >= 43  # 32 random bytes, URL-safe base64
    assert all(ch.isalnum() or ch in "-_" for ch in key)

    again = (await gateway.get("/api/v2/streams/key", headers=alice.headers)).json()
    assert again["stream_key"] == key

    # At rest: a SHA-256 and an encrypted box, never the key.
    channel = await _channel(gateway_app, alice.stream_id)
    assert channel.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert stream_key_matches(key, channel.key_hash)
    assert key not in channel.key_box

    rotated = await gateway.post("/api/v2/streams/key/rotate", headers=alice.headers)
    assert rotated.status_code == 200
    new_key = rotated.json()["stream_key"]
    assert new_key != key
    assert rotated.json()["stream_id"] == alice.stream_id  # the public id never changes
    shown = (await gateway.get("/api/v2/streams/key", headers=alice.headers)).json()
    assert shown["stream_key"] == new_key
    channel = await _channel(gateway_app, alice.stream_id)
    assert stream_key_matches(new_key, channel.key_hash)
    assert not stream_key_matches(key, channel.key_hash)


async def test_rotation_publishes_the_new_hash_only(
    gateway: httpx.AsyncClient, gateway_user: UserFactory, event_streams: JetStreamContext
) -> None:
    bob = await gateway_user("bob")
    new_key = (await gateway.post("/api/v2/streams/key/rotate", headers=bob.headers)).json()[
        "stream_key"
    ]
    events = await read_events(event_streams, f"channel.key_rotated.{bob.stream_id}", 2)
    (raw_first, first), (raw_second, second) = events
    assert isinstance(first, ChannelKeyRotated)
    assert isinstance(second, ChannelKeyRotated)
    assert second.key_hash == hashlib.sha256(new_key.encode()).hexdigest()
    assert first.key_hash != second.key_hash
    assert new_key.encode() not in raw_first + raw_second


async def test_unreadable_key_box_rotates_on_get(
    gateway: httpx.AsyncClient, gateway_app: Litestar, gateway_user: UserFactory
) -> None:
    """If the box secret changed, the key is unrecoverable: GET issues a new one."""
    carol = await gateway_user("carol")
    old = (await gateway.get("/api/v2/streams/key", headers=carol.headers)).json()["stream_key"]
    other_box = (await _channel(gateway_app, carol.stream_id)).key_box
    services: Services = gateway_app.state.services
    async with services.sessions.begin() as session:
        # A box sealed for another channel (AAD mismatch) stands in for a changed secret.
        foreign = services.key_box.seal("another-stream", "whatever")
        await session.execute(
            update(Channel).where(Channel.stream_id == carol.stream_id).values(key_box=foreign)
        )
    response = await gateway.get("/api/v2/streams/key", headers=carol.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["rotated"] is True
    assert body["stream_key"] != old
    assert (await _channel(gateway_app, carol.stream_id)).key_box != other_box


async def test_start_and_stop_publish_events_for_the_callers_channel(
    gateway: httpx.AsyncClient,
    gateway_app: Litestar,
    gateway_user: UserFactory,
    event_streams: JetStreamContext,
) -> None:
    dave = await gateway_user("dave")
    started = await gateway.post(
        "/api/v2/streams/start",
        headers=dave.headers,
        json={"title": "  Speedrun night  ", "description": "line one\nline two"},
    )
    assert started.status_code == 200, started.text
    assert started.json()["title"] == "Speedrun night"
    stopped = await gateway.post("/api/v2/streams/stop", headers=dave.headers)
    assert stopped.status_code == 202
    assert stopped.json() == {"stream_id": dave.stream_id, "status": "stop_requested"}

    [(_, updated)] = await read_events(event_streams, "channel.updated.*", 1)
    [(_, stop)] = await read_events(event_streams, "stream.stop_requested.*", 1)
    assert isinstance(updated, ChannelUpdated)
    assert (updated.stream_id, updated.user_id) == (dave.stream_id, dave.id)
    assert (updated.title, updated.description) == ("Speedrun night", "line one\nline two")
    assert isinstance(stop, StreamStopRequested)
    assert (stop.stream_id, stop.user_id, stop.reason) == (dave.stream_id, dave.id, "owner")
    channel = await _channel(gateway_app, dave.stream_id)
    assert (channel.title, channel.description) == ("Speedrun night", "line one\nline two")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 141},
        {"title": "ok", "description": "d" * 5001},
        {"title": "bell\x07"},
        {"title": "ok", "description": "nul\x00"},
        {"title": ["not", "a", "string"]},
        {"title": "ok", "extra": 1},
    ],
)
async def test_start_rejects_bad_metadata_with_400(
    gateway: httpx.AsyncClient, gateway_user: UserFactory, body: dict[str, object]
) -> None:
    erin = await gateway_user("erin")
    response = await gateway.post("/api/v2/streams/start", headers=erin.headers, json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_authorization_matrix(
    gateway: httpx.AsyncClient,
    gateway_app: Litestar,
    gateway_user: UserFactory,
    event_streams: JetStreamContext,
) -> None:
    a = await gateway_user("user_a")
    b = await gateway_user("user_b")
    b_key = (await gateway.get("/api/v2/streams/key", headers=b.headers)).json()["stream_key"]

    # Nobody without a token.
    for method, path in PROTECTED:
        response = await gateway.request(method, path, json={"title": "t"})
        assert response.status_code == 401, (method, path)

    # A's token only ever reaches A's channel.
    a_key = await gateway.get("/api/v2/streams/key", headers=a.headers)
    assert a_key.json()["stream_id"] == a.stream_id
    assert a_key.json()["stream_key"] != b_key
    rotated = await gateway.post("/api/v2/streams/key/rotate", headers=a.headers)
    assert rotated.json()["stream_id"] == a.stream_id
    start = await gateway.post("/api/v2/streams/start", headers=a.headers, json={"title": "A"})
    assert start.json()["stream_id"] == a.stream_id
    stop = await gateway.post("/api/v2/streams/stop", headers=a.headers)
    assert stop.json()["stream_id"] == a.stream_id

    # B is untouched: same key, no metadata, no events about B's channel after signup.
    b_after = (await gateway.get("/api/v2/streams/key", headers=b.headers)).json()
    assert b_after["stream_key"] == b_key
    assert (await _channel(gateway_app, b.stream_id)).title == ""
    [(_, updated)] = await read_events(event_streams, "channel.updated.*", 1)
    [(_, stopped)] = await read_events(event_streams, "stream.stop_requested.*", 1)
    assert isinstance(updated, ChannelUpdated)
    assert isinstance(stopped, StreamStopRequested)
    assert (updated.stream_id, stopped.stream_id) == (a.stream_id, a.stream_id)
    key_events = [e for _, e in await read_events(event_streams, "channel.key_rotated.*", 3)]
    assert [e.stream_id for e in key_events if isinstance(e, ChannelKeyRotated)] == [
        a.stream_id,
        b.stream_id,
        a.stream_id,
    ]
    info = await event_streams.stream_info("ACCOUNTS")
    assert info.state.messages == 6  # 2 registrations, 3 key events, 1 channel update


async def test_a_token_for_a_deleted_account_is_refused(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    async with running_gateway(gateway_settings) as (app, client):
        frank = await register_user(client, "frank")
        services: Services = app.state.services
        async with services.sessions.begin() as session:
            user = await session.get(User, frank.id)
            await session.delete(user)
        for method, path in PROTECTED:
            response = await client.request(
                method, path, headers=frank.headers, json={"title": "t"}
            )
            assert response.status_code == 401, (method, path, response.text)


async def test_urls_in_the_key_answer_come_from_settings(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    """Public URLs come from settings, so a deployment shows its own addresses."""
    custom = msgspec.structs.replace(
        gateway_settings,
        public_url="https://video.example.org/",
        rtmp_public_url="rtmp://ingest.example.org:1935/live",
    )
    async with running_gateway(custom) as (_app, client):
        grace = await register_user(client, "grace")
        body = (await client.get("/api/v2/streams/key", headers=grace.headers)).json()
    assert body["rtmp_url"] == "rtmp://ingest.example.org:1935/live"
    assert body["playback_url"] == (f"https://video.example.org/live/{grace.stream_id}/index.m3u8")
