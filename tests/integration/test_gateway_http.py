"""Cross-cutting HTTP behaviour: problem+json, CORS, security headers, body limit, docs,
health and readiness (NATS stopped and restarted), metrics, a real uvicorn process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
import pytest
from faststream.nats import NatsBroker
from litestar import Litestar
from nats.js import JetStreamContext

from common.nats_server import NatsServerProcess
from common.settings import Settings
from tests.fixtures.gateway import GatewayUser, gateway_process, register_user, running_gateway

pytestmark = pytest.mark.integration

UserFactory = Callable[[str], Awaitable[GatewayUser]]
ALLOWED = "https://app.example.com"
READY_DEADLINE_S = 20.0


def _problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


async def test_errors_are_problem_json(gateway: httpx.AsyncClient) -> None:
    assert "/nope" in str(_problem(await gateway.get("/nope"), 404)["detail"])
    assert "allowed" in str(_problem(await gateway.delete("/healthz"), 405)["detail"])
    _problem(await gateway.post("/api/v2/auth/login", content=b"{not json"), 400)
    _problem(await gateway.post("/api/v2/auth/login", json=[1, 2]), 400)
    _problem(await gateway.post("/api/v2/auth/login", content=b""), 400)
    _problem(
        await gateway.post(
            "/api/v2/auth/login", content=b"\xff\xfe", headers={"content-type": "application/json"}
        ),
        400,
    )
    huge = b'{"login": "' + b"x" * (2 * 1024 * 1024) + b'", "password": "p"}'
    _problem(await gateway.post("/api/v2/auth/login", content=huge), 413)


async def test_security_headers_everywhere(gateway: httpx.AsyncClient) -> None:
    for response in (
        await gateway.get("/healthz"),
        await gateway.get("/nope"),
        await gateway.get("/schema"),
        await gateway.post("/api/v2/auth/login", json={}),
    ):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-request-id"]


async def test_docs_page_has_no_inline_script_and_documents_are_served(
    gateway: httpx.AsyncClient,
) -> None:
    page = await gateway.get("/schema")
    assert page.status_code == 200
    assert "<script>" not in page.text  # every script has a src: CSP 'self' allows it
    assert "<style" not in page.text
    assert "cdn" not in page.text.lower()
    spec = (await gateway.get("/schema/openapi.json")).json()
    for path in (
        "/api/v2/auth/register",
        "/api/v2/auth/login",
        "/api/v2/auth/me",
        "/api/v2/streams/key",
        "/api/v2/streams/key/rotate",
        "/api/v2/streams/start",
        "/api/v2/streams/stop",
    ):
        assert path in spec["paths"], path
    assert "BearerToken" in spec["components"]["securitySchemes"]
    init = await gateway.get("/schema/ui/init.js")
    assert init.status_code == 200
    assert "SwaggerUIBundle" in init.text
    _problem(await gateway.get("/schema/ui/..%2f..%2fapp.py"), 404)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_asyncapi_document_is_served_and_cached(
    gateway: httpx.AsyncClient, gateway_app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    import events.asyncapi

    built: list[str] = []
    real = events.asyncapi.build_component_brokers

    def gateway_only(settings: Settings, *args: object, **kwargs: object) -> list[NatsBroker]:
        # Only our bus module: other components' modules are not this test's subject.
        built.append("once")
        return real(settings, ("gateway.bus",))

    monkeypatch.setattr(events.asyncapi, "build_component_brokers", gateway_only)
    first = await gateway.get("/schema/asyncapi.json")
    assert first.status_code == 200
    document = first.json()
    assert document["asyncapi"].startswith("3.")
    assert "gateway:publishes:channel.key_rotated" in json.dumps(document)
    assert (await gateway.get("/schema/asyncapi.json")).json() == document
    assert built == ["once"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_asyncapi_unavailable_is_a_503_problem(
    gateway: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import events.asyncapi

    def broken(*_args: object, **_kwargs: object) -> list[NatsBroker]:
        raise ImportError("a component's bus module is broken")

    monkeypatch.setattr(events.asyncapi, "build_component_brokers", broken)
    response = await gateway.get("/schema/asyncapi.json")
    _problem(response, 503)
    assert "broken" not in response.text  # the cause goes to the log, not the client


async def test_cors_allows_only_configured_origins(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    configured = msgspec.structs.replace(gateway_settings, cors_origins=(ALLOWED,))
    async with running_gateway(configured) as (_app, client):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        ok = await client.options("/api/v2/streams/start", headers={"Origin": ALLOWED, **preflight})
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert ok.headers["access-control-allow-headers"] == "authorization, content-type"
        assert "access-control-allow-credentials" not in ok.headers

        simple = await client.get("/healthz", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        assert "Retry-After" in simple.headers["access-control-expose-headers"]

        for origin in (
            "https://evil.example",
            "https://app.example.com.evil.example",
            "http://app.example.com",  # another scheme is another origin
            "null",
        ):
            foreign = await client.options(
                "/api/v2/streams/start", headers={"Origin": origin, **preflight}
            )
            assert foreign.status_code == 403, origin
            get = await client.get("/healthz", headers={"Origin": origin})
            for response in (foreign, get):
                cors = [h for h in response.headers if h.startswith("access-control-")]
                assert cors == [], (origin, cors)


async def test_no_cors_headers_when_no_origin_is_configured(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/healthz", headers={"Origin": "https://anything.example"})
    assert not [h for h in response.headers if h.startswith("access-control-")]


async def _wait_status(client: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    async with asyncio.timeout(READY_DEADLINE_S):
        while True:
            response = await client.get(path)
            if response.status_code == status:
                return response
            await asyncio.sleep(0.1)  # polling a condition under a deadline


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_readyz_follows_nats_down_and_back(
    gateway: httpx.AsyncClient, nats_server: NatsServerProcess
) -> None:
    ready = await gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"nats": "ok", "database": "ok"}
    assert (await gateway.get("/healthz")).status_code == 200

    nats_server.stop()
    try:
        down = await _wait_status(gateway, "/readyz", 503)
        body = _problem(down, 503)
        checks = body["checks"]
        assert isinstance(checks, dict)
        assert checks["nats"] != "ok"
        assert checks["database"] == "ok"
        assert (await gateway.get("/healthz")).status_code == 200  # alive, not ready
    finally:
        nats_server.start()
    await _wait_status(gateway, "/readyz", 200)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_database_down_gives_fast_503s(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    dead = msgspec.structs.replace(
        gateway_settings,
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/videopick",
    )
    async with running_gateway(dead) as (_app, client):
        async with asyncio.timeout(15):
            readyz = _problem(await client.get("/readyz"), 503)
            login = await client.post("/api/v2/auth/login", json={"login": "a", "password": "b"})
        assert isinstance(readyz["checks"], dict)
        assert readyz["checks"]["database"] != "ok"
        assert readyz["checks"]["nats"] == "ok"
        assert "database" in str(_problem(login, 503)["detail"])
        assert login.headers["retry-after"]


async def test_metrics_count_requests_by_route_template(
    gateway: httpx.AsyncClient, gateway_user: UserFactory
) -> None:
    user = await gateway_user("metered")
    await gateway.get("/api/v2/streams/key", headers=user.headers)
    await gateway.get("/definitely/not/here")
    text = (await gateway.get("/metrics")).text
    assert "videopick_http_requests_total" in text
    assert 'route="/api/v2/streams/key"' in text
    assert 'route="<unmatched>"' in text
    assert "videopick_http_request_duration_seconds_bucket" in text
    assert user.token not in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_real_uvicorn_processes_share_metrics_and_limits(
    gateway_settings: Settings, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    """Two ``python -m gateway`` processes: multiprocess metrics, one login limit."""
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    extra = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "VIDEOPICK_LOGIN_LIMIT_ATTEMPTS": "3",
    }
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(
                gateway_process(gateway_settings, tmp_path / f"gateway{i}.log", extra)
            )
            for i in range(2)
        ]
        codes = []
        with httpx.Client(timeout=10) as client:
            for index in range(5):
                response = client.post(
                    f"{urls[index % 2]}/api/v2/auth/login",
                    json={"login": "mallory", "password": "guess-guess"},
                )
                codes.append(response.status_code)
            metrics = client.get(f"{urls[0]}/metrics").text
    assert codes == [401, 401, 401, 429, 429]
    # Both processes' requests show up in either process's /metrics.
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("videopick_http_requests_total{")
        and 'route="/api/v2/auth/login"' in line
        and 'status="401"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 3.0
    assert any(metrics_dir.iterdir())  # samples went through the shared folder


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_curl_walkthrough_against_a_real_server(gateway_server: str) -> None:
    """The README's sequence, over real sockets: register, login, key, rotate, start, stop."""
    with httpx.Client(base_url=gateway_server, timeout=10) as client:
        registered = client.post(
            "/api/v2/auth/register",
            json={"username": "streamer", "email": "streamer@example.com", "password": "hunter22!"},
        )
        assert registered.status_code == 201
        login = client.post(
            "/api/v2/auth/login", json={"login": "streamer", "password": "hunter22!"}
        )
        assert login.status_code == 200
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        key = client.get("/api/v2/streams/key", headers=auth).json()
        assert key["stream_id"] == registered.json()["user"]["stream_id"]
        rotated = client.post("/api/v2/streams/key/rotate", headers=auth).json()
        assert rotated["stream_key"] != key["stream_key"]
        started = client.post(
            "/api/v2/streams/start", headers=auth, json={"title": "Hello", "description": ""}
        )
        assert started.status_code == 200
        assert client.post("/api/v2/streams/stop", headers=auth).status_code == 202


async def test_register_is_rate_limited_per_address(
    gateway_settings: Settings, event_streams: JetStreamContext
) -> None:
    limited = msgspec.structs.replace(gateway_settings, login_limit_attempts=2)
    async with running_gateway(limited) as (_app, client):
        await register_user(client, "first_one")
        await register_user(client, "second_one")
        response = await client.post(
            "/api/v2/auth/register",
            json={"username": "third_one", "email": "t@example.com", "password": "12345678"},
        )
        _problem(response, 429)
