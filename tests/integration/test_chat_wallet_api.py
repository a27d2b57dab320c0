"""``/api/v2/wallet``: balance, entries, earnings, and who may top up."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from nats.js import JetStreamContext

from chat.worker import ChatWorker
from common.settings import Settings
from tests.integration.chat_stack import (
    Account,
    chat_knows,
    chat_settings,
    listen,
    register,
    start_gateway,
    start_worker,
)

pytestmark = pytest.mark.integration


def auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


@dataclass
class Running:
    http: httpx.AsyncClient
    ws_url: str
    worker: ChatWorker


@contextlib.asynccontextmanager
async def running(config: Settings) -> AsyncIterator[Running]:
    async with (
        start_worker(config) as worker,
        start_gateway(config) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        yield Running(http, gateway.ws_url, worker)


async def test_topup_wallet_and_earnings_in_dev(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    async with running(chat_settings(settings, database_url)) as stack:
        http = stack.http
        streamer = await register(http, "streamer")
        fan = await register(http, "fan")
        await chat_knows(stack.worker, streamer, fan)
        assert (await http.get("/api/v2/wallet")).status_code == 401
        empty = await http.get("/api/v2/wallet", headers=auth(fan))
        assert empty.status_code == 200, empty.text
        assert empty.json() == {
            "user_id": fan.id,
            "balance": 0,
            "entries": [],
            "earnings": {"total": 0, "count": 0, "recent": []},
            "can_topup": True,  # env=dev
        }
        # (Litestar converts "5" to 5 for a number field: lax, not wrong.)
        for body in ({"amount": 0}, {"amount": 1_000_001}, {"amount": 5, "x": 1}, {"note": "x"}):
            bad = await http.post("/api/v2/wallet/topup", json=body, headers=auth(fan))
            assert bad.status_code == 400, (body, bad.text)
            assert bad.headers["content-type"].startswith("application/problem+json")
        topped = await http.post(
            "/api/v2/wallet/topup", json={"amount": 300, "note": "test"}, headers=auth(fan)
        )
        assert topped.status_code == 200, topped.text
        assert topped.json()["applied"] is True
        assert topped.json()["balance"] == 300
        listener = await listen(stack.ws_url, f"chat:{streamer.stream_id}", fan.token)
        await listener.sub.publish({"text": "for you", "amount": 120})
        await listener.next()
        await listener.close()
        wallet = (await http.get("/api/v2/wallet", headers=auth(fan))).json()
        assert wallet["balance"] == 180
        assert [(e["kind"], e["amount"]) for e in wallet["entries"]] == [
            ("superchat_sent", -120),
            ("topup", 300),
        ]
        earnings = await http.get("/api/v2/wallet/earnings", headers=auth(streamer))
        assert earnings.status_code == 200
        body = earnings.json()
        assert (body["total"], body["count"]) == (120, 1)
        assert body["recent"][0]["text"] == "for you"
        assert body["recent"][0]["counterparty_user_id"] == fan.id


async def test_topup_outside_dev_needs_an_admin(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    base = chat_settings(
        settings,
        database_url,
        env="production",
        jwt_secret="a-long-production-secret-for-tests-0123456789abcdef0123456789abcdef",
    )
    async with running(base) as stack:
        admin = await register(stack.http, "admin")
        viewer = await register(stack.http, "viewer")
    # The admin list names users by id: start again with it (same database).
    config = chat_settings(
        settings,
        database_url,
        env="production",
        jwt_secret=base.jwt_secret,
        chat_admin_user_ids=(admin.id,),
    )
    async with running(config) as stack:
        http = stack.http
        refused = await http.post("/api/v2/wallet/topup", json={"amount": 5}, headers=auth(viewer))
        assert refused.status_code == 403
        assert refused.json()["detail"] == "top-ups are for administrators (or env=dev)"
        granted = await http.post(
            "/api/v2/wallet/topup",
            json={"amount": 5, "user_id": viewer.id},
            headers=auth(admin),
        )
        assert granted.status_code == 200, granted.text
        assert granted.json()["user_id"] == viewer.id
        wallet = await http.get("/api/v2/wallet", headers=auth(viewer))
        assert (wallet.json()["balance"], wallet.json()["can_topup"]) == (5, False)
        mine = await http.get("/api/v2/wallet", headers=auth(admin))
        assert mine.json()["can_topup"] is True


async def test_wallet_answers_503_when_the_chat_component_is_down(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    config = chat_settings(settings, database_url)
    async with start_gateway(config) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        user = await register(http, "lonely")
        response = await http.get("/api/v2/wallet", headers=auth(user))
        assert response.status_code == 503
        assert "did not answer" in response.json()["detail"]
