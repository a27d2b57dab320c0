"""A running chat stack for tests: gateway processes (uvicorn, real sockets) and chat workers.

Everything runs in the test's event loop, each part with its own NATS connections and
state, as separate processes would: ``start_gateway`` serves ``create_app`` (with the
chat route and lifespan hook added as ``gateway/app.py`` wires them) with uvicorn on a
free port; ``ChatWorker`` is what ``python -m chat`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import centrifuge  # type: ignore[import-untyped]  # the SDK ships no type hints
import httpx
import msgspec
import uvicorn
from litestar import Litestar
from sqlalchemy import select

import gateway.app as gateway_app
from chat.models import ChatUserRow
from chat.worker import ChatWorker
from common.settings import Settings
from gateway.api.wallet import wallet_router
from gateway.centrifuge.endpoint import STATE_KEY, centrifugo_websocket
from gateway.centrifuge.service import ChatGateway
from gateway.centrifuge.wiring import chat_lifespan
from tests.fixtures.asgi_server import serve_with_gateway_protocol

DEADLINE_S = 20.0


def chat_settings(settings: Settings, database_url: str, **changes: Any) -> Settings:
    """Test settings: no rate limit unless a test sets one (via /ratelimit or here)."""
    base: dict[str, Any] = {
        "database_url": database_url,
        "chat_rate_burst": 100_000,
        "chat_rate_per_s": 100_000.0,
        "public_url": "http://gateway.test:8080",
        "cors_origins": ("https://app.example",),
    }
    base.update(changes)
    return msgspec.structs.replace(settings, **base)


def chat_app(settings: Settings) -> Litestar:
    """``create_app`` with the chat wired in (once the lead wires it, nothing is added)."""
    routes = list(gateway_app.ROUTE_HANDLERS)
    hooks = list(gateway_app.LIFESPAN_HOOKS)
    if centrifugo_websocket not in routes:
        routes += [centrifugo_websocket, wallet_router]
    if chat_lifespan not in hooks:
        hooks.append(chat_lifespan)
    with (
        patch.object(gateway_app, "ROUTE_HANDLERS", routes),
        patch.object(gateway_app, "LIFESPAN_HOOKS", hooks),
    ):
        return gateway_app.create_app(settings)


@dataclass
class RunningGateway:
    app: Litestar
    url: str
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/connection/websocket"

    @property
    def chat(self) -> ChatGateway:
        chat = getattr(self.app.state, STATE_KEY)
        assert isinstance(chat, ChatGateway)
        return chat


async def wait_for(condition: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def start_gateway(
    settings: Settings, **uvicorn_options: Any
) -> AsyncIterator[RunningGateway]:
    app = chat_app(settings)
    served = serve_with_gateway_protocol(
        app,
        lifespan="on",
        # Bigger than the chat's own frame limit, so the tests see the chat's check.
        ws_max_size=4 * 1024 * 1024,
        **uvicorn_options,
    )
    async with served as running:
        url = f"http://127.0.0.1:{running.port}"
        yield RunningGateway(app, url, running.server, running.task)


@contextlib.asynccontextmanager
async def start_worker(settings: Settings) -> AsyncIterator[ChatWorker]:
    worker = ChatWorker(settings)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    stream_id: str
    token: str


async def register(http: httpx.AsyncClient, name: str) -> Account:
    response = await http.post(
        "/api/v2/auth/register",
        json={"username": name, "email": f"{name}@example.com", "password": f"pw-{name}-horse-1"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        id=body["user"]["id"],
        username=name,
        stream_id=body["user"]["stream_id"],
        token=body["access_token"],
    )


async def chat_knows(worker: ChatWorker, *accounts: Account) -> None:
    """Until the chat component has consumed these users' ``user.registered``."""
    wanted = {a.id for a in accounts}

    async def known() -> bool:
        async with worker.sessions() as session:
            found = set(
                (
                    await session.scalars(
                        select(ChatUserRow.user_id).where(ChatUserRow.user_id.in_(wanted))
                    )
                ).all()
            )
        return found == wanted

    await wait_for(known, f"chat to learn {sorted(wanted)}")


class Listener:
    """A centrifuge-python client with every publication of one channel in a queue."""

    def __init__(self, client: centrifuge.Client, channel: str) -> None:
        self.client = client
        self.pubs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscribed: list[centrifuge.SubscribedContext] = []
        self.offsets: list[int] = []
        self.history: list[dict[str, Any]] = []  # what a test chose to keep
        self.sub = client.new_subscription(channel, events=_SubEvents(self))

    async def next(self, kind: str = "message", within_s: float = DEADLINE_S) -> dict[str, Any]:
        """The next publication of ``kind`` (others are skipped)."""
        async with asyncio.timeout(within_s):
            while True:
                data = await self.pubs.get()
                if data.get("type") == kind:
                    return data

    async def messages(self, count: int, within_s: float = DEADLINE_S) -> list[dict[str, Any]]:
        return [await self.next("message", within_s) for _ in range(count)]

    def drain(self) -> list[dict[str, Any]]:
        items = []
        while not self.pubs.empty():
            items.append(self.pubs.get_nowait())
        return items

    async def close(self) -> None:
        await self.client.disconnect()


class _SubEvents(centrifuge.SubscriptionEventHandler):  # type: ignore[misc]
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    async def on_publication(self, ctx: centrifuge.PublicationContext) -> None:
        self.listener.pubs.put_nowait(ctx.pub.data)
        if ctx.pub.offset:
            self.listener.offsets.append(ctx.pub.offset)

    async def on_subscribed(self, ctx: centrifuge.SubscribedContext) -> None:
        self.listener.subscribed.append(ctx)


async def listen(ws_url: str, channel: str, token: str = "", **options: Any) -> Listener:
    client = centrifuge.Client(ws_url, token=token, proxy=None, **options)
    listener = Listener(client, channel)
    await client.connect()
    await listener.sub.subscribe()
    await listener.sub.ready(timeout=DEADLINE_S)
    return listener


def pub_json(frame: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in frame.split("\n") if line.strip()]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
