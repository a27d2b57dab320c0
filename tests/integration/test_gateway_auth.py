"""Accounts over HTTP: register, login, me, validation, duplicates, the login limit, events.

Real NATS (events read back from JetStream) and both database backends.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import httpx
import msgspec
import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from events.catalog import ChannelKeyRotated, UserRegistered, decode_event
from events.envelope import Event
from tests.fixtures.gateway import GatewayUser, asgi_client, register_user, running_gateway

pytestmark = pytest.mark.integration

UserFactory = Callable[[str], Awaitable[GatewayUser]]
FETCH_TIMEOUT_S = 5.0


async def read_events(js: JetStreamContext, subject: str, count: int) -> list[tuple[bytes, Event]]:
    """The first ``count`` events on ``subject`` (raw bytes and decoded), waiting for them."""
    sub = await js.pull_subscribe(subject, durable=None)
    try:
        got: list[tuple[bytes, Event]] = []
        async with asyncio.timeout(FETCH_TIMEOUT_S):
            while len(got) < count:
                for msg in await sub.fetch(count - len(got), timeout=FETCH_TIMEOUT_S):
                    got.append((msg.data, decode_event(msg.data)))
                    await msg.ack()
        return got
    finally:
        await sub.unsubscribe()


async def test_register_login_me(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/api/v2/auth/register",
        json={"username": "Alice_01", "email": "Alice@Example.com", "password": "s3cret-pass"},
    )
    assert response.status_code == 201, response.text
    registered = response.json()
    assert registered["token_type"] == "bearer"
    assert registered["expires_in"] == 24 * 3600
    user = registered["user"]
    assert user["username"] == "Alice_01"
    assert user["email"] == "Alice@Example.com"
    assert user["stream_id"]
    assert user["stream_id"] != user["id"]

    # Login by username or email, case-insensitively; the same account every time.
    for login in ("Alice_01", "alice_01", "alice@example.com", "ALICE@EXAMPLE.COM"):
        response = await gateway.post(
            "/api/v2/auth/login", json={"login": login, "password": "s3cret-pass"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user"] == user
        assert set(body) == {"access_token", "token_type", "expires_in", "user"}

    me = await gateway.get(
        "/api/v2/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json() == user
    # The registration token works as well.
    me = await gateway.get(
        "/api/v2/auth/me", headers={"Authorization": f"Bearer {registered['access_token']}"}
    )
    assert me.json() == user


async def test_wrong_password_and_unknown_user_get_the_same_401(
    gateway: httpx.AsyncClient, gateway_user: UserFactory
) -> None:
    await gateway_user("bob")
    wrong = await gateway.post("/api/v2/auth/login", json={"login": "bob", "password": "nope-nope"})
    unknown = await gateway.post(
        "/api/v2/auth/login", json={"login": "nobody", "password": "nope-nope"}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "wrong login or password"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "ab", "email": "a@b.co", "password": "12345678"}, "username"),
        ({"username": "a" * 33, "email": "a@b.co", "password": "12345678"}, "username"),
        ({"username": "bad name", "email": "a@b.co", "password": "12345678"}, "username"),
        ({"username": "évé", "email": "a@b.co", "password": "12345678"}, "username"),
        ({"username": "carol", "email": "not-an-email", "password": "12345678"}, "email"),
        ({"username": "carol", "email": "a@b", "password": "12345678"}, "email"),
        ({"username": "carol", "email": "a@b.co", "password": "short"}, "password"),
        ({"username": "carol", "email": "a@b.co", "password": "x" * 257}, "password"),
        ({"username": "carol", "email": "a@b.co"}, "password"),
        ({"username": 5, "email": "a@b.co", "password": "12345678"}, "username"),
    ],
)
async def test_registration_validation_is_a_clear_400(
    gateway: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await gateway.post("/api/v2/auth/register", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/validation"
    assert problem["status"] == 400
    assert field in problem["detail"]
    assert "Traceback" not in response.text


async def test_duplicates_are_409(gateway: httpx.AsyncClient, gateway_user: UserFactory) -> None:
    await gateway_user("dave")
    same_name = await gateway.post(
        "/api/v2/auth/register",
        json={"username": "DAVE", "email": "other@example.com", "password": "12345678"},
    )
    same_email = await gateway.post(
        "/api/v2/auth/register",
        json={"username": "dave2", "email": "Dave@Example.com", "password": "12345678"},
    )
    assert same_name.status_code == 409
    assert "username" in same_name.json()["detail"]
    assert same_email.status_code == 409
    assert "email" in same_email.json()["detail"]


async def test_concurrent_duplicate_registrations_make_one_account(
    gateway: httpx.AsyncClient,
) -> None:
    body = {"username": "erin", "email": "erin@example.com", "password": "12345678"}
    responses = await asyncio.gather(
        *(gateway.post("/api/v2/auth/register", json=body) for _ in range(3))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409], [r.text for r in responses]


async def test_registration_publishes_user_and_key_events_without_secrets(
    gateway: httpx.AsyncClient, event_streams: JetStreamContext
) -> None:
    password = "pw-never-on-the-bus"
    response = await gateway.post(
        "/api/v2/auth/register",
        json={"username": "frank", "email": "frank@example.com", "password": password},
    )
    assert response.status_code == 201
    body = response.json()
    user = body["user"]
    key = (
        await gateway.get(
            "/api/v2/streams/key", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
    ).json()["stream_key"]

    [(raw_user, registered)] = await read_events(event_streams, "user.registered.*", 1)
    [(raw_key, rotated)] = await read_events(event_streams, "channel.key_rotated.*", 1)
    assert isinstance(registered, UserRegistered)
    assert (registered.user_id, registered.username, registered.stream_id) == (
        user["id"],
        "frank",
        user["stream_id"],
    )
    assert registered.producer == "gateway"
    assert isinstance(rotated, ChannelKeyRotated)
    assert rotated.stream_id == user["stream_id"]
    assert rotated.user_id == user["id"]
    assert rotated.hash_algorithm == "sha256"
    assert rotated.key_hash == hashlib.sha256(key.encode()).hexdigest()
    for raw in (raw_user, raw_key):
        # Not the key, the password, the email or the token: anywhere in the stored bytes.
        for secret in (key, password, "frank@example.com", body["access_token"]):
            assert secret.encode() not in raw
    # The subject ends with the entity key, so consumers can filter per channel.
    info = await event_streams.get_last_msg("ACCOUNTS", f"channel.key_rotated.{user['stream_id']}")
    assert info.data == raw_key


async def test_login_limit_per_account_then_429_with_retry_after(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    limited = msgspec.structs.replace(gateway_settings, login_limit_attempts=3)
    async with running_gateway(limited) as (_app, client):
        user = await register_user(client, "grace")
        bad = {"login": "grace", "password": "wrong-password"}
        for _ in range(3):
            assert (await client.post("/api/v2/auth/login", json=bad)).status_code == 401
        refused = await client.post("/api/v2/auth/login", json=bad)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= limited.login_limit_window_s + 1
        # Even the right password is refused while limited: no Argon2 runs for it.
        good = {"login": "grace", "password": user.password}
        assert (await client.post("/api/v2/auth/login", json=good)).status_code == 429


async def test_login_limit_per_address_spans_accounts(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    limited = msgspec.structs.replace(gateway_settings, login_limit_attempts=4)
    async with running_gateway(limited) as (app, client):
        for index in range(4):
            response = await client.post(
                "/api/v2/auth/login", json={"login": f"user{index}", "password": "whatever1"}
            )
            assert response.status_code == 401
        response = await client.post(
            "/api/v2/auth/login", json={"login": "someone_else", "password": "whatever1"}
        )
        assert response.status_code == 429
        # Another address is not affected by this one's attempts.
        async with asgi_client(app, ("203.0.113.7", 4000)) as second:
            response = await second.post(
                "/api/v2/auth/login", json={"login": "user9", "password": "whatever1"}
            )
            assert response.status_code == 401


async def test_login_limit_is_shared_between_gateway_processes(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    """Two app instances (two worker processes) on one database count together."""
    limited = msgspec.structs.replace(gateway_settings, login_limit_attempts=4)
    async with running_gateway(limited) as (_a, first), running_gateway(limited) as (_b, second):
        bad = {"login": "heidi", "password": "wrong-password"}
        codes = [
            (await (first if i % 2 else second).post("/api/v2/auth/login", json=bad)).status_code
            for i in range(6)
        ]
    assert codes == [401, 401, 401, 401, 429, 429]


async def test_successful_login_clears_the_account_counter(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    limited = msgspec.structs.replace(gateway_settings, login_limit_attempts=3)
    async with running_gateway(limited) as (app, client):
        user = await register_user(client, "ivan")
        # From different addresses, so only the account bucket fills up.
        for index in range(2):
            async with asgi_client(app, (f"198.51.100.{index}", 1)) as other:
                response = await other.post(
                    "/api/v2/auth/login", json={"login": "ivan", "password": "wrong-password"}
                )
                assert response.status_code == 401
        good = {"login": "ivan", "password": user.password}
        async with asgi_client(app, ("198.51.100.50", 1)) as other:
            assert (await other.post("/api/v2/auth/login", json=good)).status_code == 200
            # Counter cleared: two more failures are still under the limit of 3.
            for _ in range(2):
                response = await other.post(
                    "/api/v2/auth/login", json={"login": "ivan", "password": "wrong-password"}
                )
                assert response.status_code == 401


async def test_me_requires_a_bearer_token(gateway: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        response = await gateway.get("/api/v2/auth/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
