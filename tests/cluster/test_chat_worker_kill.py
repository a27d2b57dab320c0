"""kill -9 a chat worker during a super chat burst: every debit happens exactly once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.cluster.conftest import Cluster, wait_for
from tests.integration.chat_stack import Account, listen, register

pytestmark = pytest.mark.cluster

BURST = 40
AMOUNT = 120
TOPUP = 100_000
KILL_AFTER = 12
# The chat consumer's ack_wait is 30 s: the dead worker's unacked messages come back
# to the other worker after it.
SETTLE_S = 90.0
# Past the gateway's own deadline for a JetStream ack (5 attempts of 2 s, with backoff):
# a fresh cluster under load can stall a publish for seconds (a leader election), and a
# client that gave up could not say whether its super chat was taken.
PUBLISH_TIMEOUT_S = 30.0


def _auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


async def test_superchat_debits_exactly_once_when_a_chat_worker_dies(cluster: Cluster) -> None:
    gateway = cluster.gateways[0]
    tag = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=gateway, timeout=10.0) as http:
        streamer = await register(http, f"star{tag}")
        fan = await register(http, f"fan{tag}")

        async def topped_up() -> bool:
            response = await http.post(
                "/api/v2/wallet/topup", json={"amount": TOPUP}, headers=_auth(fan)
            )
            return response.status_code == 200 and response.json()["balance"] == TOPUP

        await wait_for(topped_up, "the chat component to learn the fan")

        listener = await listen(
            gateway.replace("http", "ws") + "/connection/websocket",
            f"chat:{streamer.stream_id}",
            fan.token,
            timeout=PUBLISH_TIMEOUT_S,
        )
        try:
            texts = [f"super {tag} {index}" for index in range(BURST)]
            for index, text in enumerate(texts):
                if index == KILL_AFTER:
                    cluster.kill("chat-0")
                # Each publish returns once the gateway has the message in JetStream.
                await listener.sub.publish({"text": text, "amount": AMOUNT})
                await asyncio.sleep(0.02)

            seen: dict[str, int] = {}

            async def all_delivered() -> bool:
                for data in listener.drain():
                    if data.get("type") == "message" and data.get("text") in texts:
                        seen[data["text"]] = seen.get(data["text"], 0) + 1
                return len(seen) == BURST

            await wait_for(all_delivered, "every super chat on the channel", SETTLE_S)
        finally:
            await listener.close()
            cluster.revive("chat-0")

        wallet = (await http.get("/api/v2/wallet", headers=_auth(fan))).json()
        assert wallet["balance"] == TOPUP - BURST * AMOUNT
        earnings = (await http.get("/api/v2/wallet/earnings", headers=_auth(streamer))).json()
        assert (earnings["total"], earnings["count"]) == (BURST * AMOUNT, BURST)
        # No duplicate chat line either (a redelivery must not repeat a publication).
        await asyncio.sleep(1.0)
        for data in listener.drain():
            if data.get("type") == "message" and data.get("text") in texts:
                seen[data["text"]] += 1
        assert set(seen.values()) == {1}, {t: n for t, n in seen.items() if n != 1}
