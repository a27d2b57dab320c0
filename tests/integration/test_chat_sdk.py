"""The official Python SDK (centrifuge-python) against a real gateway and chat worker.

Real NATS, real uvicorn sockets, both databases. The SDK is used unchanged: connect
with the gateway's JWT or anonymously, subscribe (history arrives with the
subscribe reply), publish, history, presence_stats, recovery after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import centrifuge  # type: ignore[import-untyped]  # the SDK ships no type hints
import httpx
import pytest
from nats.js import JetStreamContext
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat.worker import ChatWorker
from common.settings import Settings
from events.catalog import ChatMessage, ChatUser, encode_event
from tests.integration.chat_helpers import XSS_PAYLOADS
from tests.integration.chat_stack import (
    DEADLINE_S,
    Account,
    Listener,
    RunningGateway,
    chat_knows,
    chat_settings,
    listen,
    register,
    start_gateway,
    start_worker,
)

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    gateway: RunningGateway
    worker: ChatWorker
    http: httpx.AsyncClient
    streamer: Account
    alice: Account
    bob: Account

    @property
    def channel(self) -> str:
        return f"chat:{self.streamer.stream_id}"

    async def listen(self, who: Account | None = None, **options: Any) -> Listener:
        token = who.token if who else ""
        return await listen(self.gateway.ws_url, self.channel, token, **options)


@pytest.fixture
async def stack(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> AsyncIterator[Stack]:
    config = chat_settings(settings, database_url)
    async with (
        start_worker(config) as worker,
        start_gateway(config) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        streamer = await register(http, "streamer")
        alice = await register(http, "alice")
        bob = await register(http, "bob")
        await chat_knows(worker, streamer, alice, bob)
        yield Stack(gateway, worker, http, streamer, alice, bob)


async def test_jwt_and_anonymous_clients_chat(stack: Stack) -> None:
    alice = await stack.listen(stack.alice)
    viewer = await stack.listen()  # anonymous: reads only
    try:
        await alice.sub.publish({"text": "hello chat"})
        for listener in (alice, viewer):
            data = await listener.next()
            assert data["text"] == "hello chat"
            assert data["user"] == {"id": stack.alice.id, "name": "alice"}
            assert isinstance(data["ts"], int)
            assert data["id"]
        with pytest.raises(centrifuge.ReplyError) as refused:
            await viewer.sub.publish({"text": "let me in"})
        assert (refused.value.code, refused.value.message) == (103, "permission denied")
        stats = await alice.sub.presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 1)
        with pytest.raises(centrifuge.ReplyError) as bad:
            await alice.client.publish("chat:", {"text": "x"})
        assert bad.value.code == 102
    finally:
        await alice.close()
        await viewer.close()


async def test_new_subscriber_gets_the_last_50(stack: Stack) -> None:
    alice = await stack.listen(stack.alice)
    try:
        for number in range(55):
            await alice.sub.publish({"text": f"message {number}"})
        await alice.messages(55)
        late = await stack.listen(stack.bob)
        try:
            history = await late.messages(50, within_s=5)
            assert [m["text"] for m in history] == [f"message {n}" for n in range(5, 55)]
            assert late.subscribed[0].recoverable
            assert late.offsets == list(range(6, 56))
            page = await late.sub.history(limit=3, reverse=True)
            assert [p.data["text"] for p in page.publications] == [
                "message 54",
                "message 53",
                "message 52",
            ]
            assert page.offset == 55
            oldest = await late.sub.history(limit=2)
            assert [p.offset for p in oldest.publications] == [1, 2]
        finally:
            await late.close()
    finally:
        await alice.close()


async def test_recovery_after_a_reconnect(stack: Stack) -> None:
    bob = await stack.listen(stack.bob)
    alice = await stack.listen(stack.alice)
    try:
        await alice.sub.publish({"text": "before"})
        assert (await bob.next())["text"] == "before"
        await bob.client.disconnect()
        for text in ("missed 1", "missed 2"):
            await alice.sub.publish({"text": text})
        await bob.client.connect()
        assert [m["text"] for m in await bob.messages(2)] == ["missed 1", "missed 2"]
        last = bob.subscribed[-1]
        assert last.was_recovering
        assert last.recovered
    finally:
        await alice.close()
        await bob.close()


async def test_rejections_reach_the_sender_only(stack: Stack) -> None:
    owner = await stack.listen(stack.streamer)
    alice = await stack.listen(stack.alice)
    bob = await stack.listen(stack.bob)
    try:
        await owner.sub.publish({"text": "/ratelimit 2 30"})
        moderation = await bob.next("moderation")
        assert (moderation["action"], moderation["value"]) == ("ratelimit", "2/30")
        await alice.sub.publish({"text": "one"})
        await alice.sub.publish({"text": "two"})
        with pytest.raises(centrifuge.ReplyError) as refused:
            await alice.sub.publish({"text": "three"})
        assert refused.value.code == 403
        assert refused.value.message.startswith("rate_limited: at most 2 messages per 30 s")
        await owner.sub.publish({"text": "/slow 60"})
        await bob.sub.publish({"text": "first"})
        with pytest.raises(centrifuge.ReplyError) as slow:
            await bob.sub.publish({"text": "second"})
        assert (slow.value.code, slow.value.message) == (
            404,
            "slow_mode: slow mode: one message every 60 s; wait 60 s",
        )
        with pytest.raises(centrifuge.ReplyError) as denied:
            await bob.sub.publish({"text": "/ban alice"})
        assert denied.value.code == 411
        # What others saw: the accepted lines only, in order.
        await owner.sub.publish({"text": "end"})
        seen = [m["text"] for m in await bob.messages(4)]
        assert seen == ["one", "two", "first", "end"]
    finally:
        for listener in (owner, alice, bob):
            await listener.close()


async def test_moderation_ban_and_clear(stack: Stack) -> None:
    owner = await stack.listen(stack.streamer)
    bob = await stack.listen(stack.bob)
    try:
        await bob.sub.publish({"text": "spam"})
        await owner.sub.publish({"text": "/ban bob"})
        ban = await owner.next("moderation")
        assert (ban["action"], ban["target_user_id"]) == ("ban", stack.bob.id)
        with pytest.raises(centrifuge.ReplyError) as banned:
            await bob.sub.publish({"text": "spam again"})
        assert banned.value.code == 405
        await owner.sub.publish({"text": "/clear"})
        clear = await owner.next("moderation")
        assert (clear["action"], clear["through_offset"]) == ("clear", 1)
        late = await stack.listen()
        try:
            await owner.sub.publish({"text": "fresh start"})
            assert [m["text"] for m in await late.messages(1)] == ["fresh start"]
        finally:
            await late.close()
    finally:
        await owner.close()
        await bob.close()


async def test_xss_payloads_travel_as_inert_text(stack: Stack) -> None:
    owner = await stack.listen(stack.streamer)  # the streamer may post links
    try:
        raw_frames: list[str] = []
        async with ws_connect(stack.gateway.ws_url) as ws:
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            await ws.recv()
            await ws.send(json.dumps({"id": 2, "subscribe": {"channel": stack.channel}}))
            await ws.recv()
            for text in XSS_PAYLOADS:
                await owner.sub.publish({"text": text})
            received = [m["text"] for m in await owner.messages(len(XSS_PAYLOADS))]
            assert received == list(XSS_PAYLOADS)
            async with asyncio.timeout(DEADLINE_S):
                while sum(f.count('"pub"') for f in raw_frames) < len(XSS_PAYLOADS):
                    raw_frames.append(str(await ws.recv()))
        wire = "\n".join(raw_frames)
        # JSON-escaped only as JSON requires; never HTML-escaped.
        assert "<img src=x onerror=alert(1)>" in wire
        assert "&lt;img" not in wire
        assert "\\u003c" not in wire
    finally:
        await owner.close()


async def test_effects_are_aggregated_and_pushed(stack: Stack) -> None:
    alice = await stack.listen(stack.alice)
    viewer = await stack.listen()
    try:
        for text in ("🎉 yes", "🎉🔥", "❤️❤️ love", "no emoji"):
            await alice.sub.publish({"text": text})
        counts: dict[str, int] = {}
        async with asyncio.timeout(DEADLINE_S):
            while sum(counts.values()) < 5:
                effect = await viewer.next("effect")
                for emoji, count in effect["counts"].items():
                    counts[emoji] = counts.get(emoji, 0) + count
        assert counts == {"🎉": 2, "🔥": 1, "❤️": 2}
    finally:
        await alice.close()
        await viewer.close()


async def test_superchat_over_the_wire(stack: Stack) -> None:
    response = await stack.http.post(
        "/api/v2/wallet/topup",
        json={"amount": 150},
        headers={"Authorization": f"Bearer {stack.alice.token}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["balance"] == 150
    alice = await stack.listen(stack.alice)
    try:
        await alice.sub.publish({"text": "love the stream", "amount": 100})
        data = await alice.next()
        assert data["superchat"] == {
            "amount": 100,
            "tier": 2,
            "color": "#00BFA5",
            "pin_seconds": 60,
        }
        with pytest.raises(centrifuge.ReplyError) as poor:
            await alice.sub.publish({"text": "again", "amount": 100})
        assert (poor.value.code, poor.value.message) == (
            409,
            "insufficient_funds: 100 credits needed, 50 available",
        )
    finally:
        await alice.close()
    wallet = await stack.http.get(
        "/api/v2/wallet", headers={"Authorization": f"Bearer {stack.streamer.token}"}
    )
    assert wallet.status_code == 200, wallet.text
    body = wallet.json()
    assert body["balance"] == 100
    assert body["earnings"]["total"] == 100
    assert body["earnings"]["recent"][0]["counterparty_user_id"] == stack.alice.id


# --- the socket's edges ---------------------------------------------------------------------


async def test_foreign_origin_is_refused_before_the_upgrade(stack: Stack) -> None:
    url = stack.gateway.ws_url
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    for origin in ("https://app.example", "http://gateway.test:8080", None):
        async with ws_connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"id": 1, "connect": {}}))
            assert json.loads(await ws.recv())["connect"]["client"]


async def test_tokens_expired_and_forged(stack: Stack) -> None:
    tokens = stack.gateway.app.state.tokens
    import datetime as dt

    expired = tokens.issue(stack.alice.id, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    async with ws_connect(stack.gateway.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": expired.token}}))
        assert json.loads(await ws.recv()) == {
            "id": 1,
            "error": {"code": 109, "message": "token expired"},
        }
    async with ws_connect(stack.gateway.ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": stack.alice.token[:-4] + "AAAA"}}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3500, "invalid token")


async def test_oversize_frames_close_and_malformed_json_disconnects(stack: Stack) -> None:
    async with ws_connect(stack.gateway.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": stack.alice.token}}))
        await ws.recv()
        await ws.send("x" * (64 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    async with ws_connect(stack.gateway.ws_url) as ws:
        await ws.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":')
        replies: list[str | bytes] = []

        async def read_all() -> None:
            while True:
                replies.append(await ws.recv())

        with pytest.raises(ConnectionClosed) as closed:
            await read_all()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 3501
        assert replies == []  # a frame with a bad line is refused whole


async def test_sdk_survives_server_pings(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    """Pings every second, pong within a second: the SDK answers; a silent client is cut."""
    config = chat_settings(
        settings, database_url, chat_ping_interval_s=1.0, chat_pong_timeout_s=1.0
    )
    async with start_worker(config), start_gateway(config) as gateway:
        listener = await listen(gateway.ws_url, "chat:pings")
        try:
            async with ws_connect(gateway.ws_url) as silent:
                await silent.send(json.dumps({"id": 1, "connect": {}}))
                await silent.recv()
                assert await silent.recv() == "{}"  # the ping, left unanswered
                with pytest.raises(ConnectionClosed) as closed:
                    await silent.recv()
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (3012, "no pong")
            assert listener.client.state == centrifuge.ClientState.CONNECTED
        finally:
            await listener.close()


async def test_a_redelivered_chat_message_shows_once(stack: Stack, js: JetStreamContext) -> None:
    """The same chat.message stored twice (a redelivery past JetStream's duplicate
    window looks like this): decided once, delivered once."""
    viewer = await stack.listen()
    alice = await stack.listen(stack.alice)
    try:
        message = ChatMessage(
            message_id="m-redelivered",
            stream_id=stack.streamer.stream_id,
            user=ChatUser(id=stack.alice.id, name="alice"),
            text="said once",
        )
        for copy in ("a", "b"):  # different Nats-Msg-Id: JetStream keeps both
            ack = await js.publish(
                message.subject(), encode_event(message), headers={"Nats-Msg-Id": f"{copy}"}
            )
            assert not ack.duplicate
        await alice.sub.publish({"text": "after"})
        texts = [m["text"] for m in await viewer.messages(2)]
        assert texts == ["said once", "after"]
        assert viewer.offsets == [1, 2]
    finally:
        await viewer.close()
        await alice.close()
