"""kill -9 a gateway behind infra/'s nginx edge: chat and HLS carry on through the other.

Centrifuge SDK clients connect through the TLS edge (round robin spreads them over
both gateways). One gateway dies mid-burst; its clients reconnect through the edge to
the survivor and recover what they missed from the channel's history, so every
listener sees every accepted message exactly once. A viewer polling the live
playlist through the edge keeps getting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from pathlib import Path

import centrifuge  # type: ignore[import-untyped]  # the SDK ships no type hints
import httpx
import pytest

from tests.cluster.conftest import Cluster, wait_for
from tests.cluster.edge import running_edge
from tests.cluster.media import live_position, publish_live
from tests.integration.chat_stack import Listener, listen, register

pytestmark = pytest.mark.cluster

LISTENERS = 4
BURST = 40
LIVE_S = 45.0


async def test_gateway_killed_clients_move_to_the_other(cluster: Cluster, tmp_path: Path) -> None:
    gateways = [url.removeprefix("http://") for url in cluster.gateways]
    with running_edge(tmp_path / "edge", gateways) as edge:
        tls = edge.ssl_context()
        async with (
            httpx.AsyncClient(base_url=edge.url, verify=tls, timeout=30.0) as http,
            httpx.AsyncClient(base_url=cluster.gateways[1], timeout=30.0) as direct,
        ):
            user = await register(http, f"gk{uuid.uuid4().hex[:8]}")
            headers = {"Authorization": f"Bearer {user.token}"}
            key = (await http.get("/api/v2/streams/key", headers=headers)).json()["stream_key"]
            await http.post(
                "/api/v2/streams/start", json={"title": "edge", "description": ""}, headers=headers
            )
            live = await publish_live(
                f"rtmp://127.0.0.1:{cluster.servers.rtmp_port}/live/{key}", LIVE_S
            )
            playlist = f"/live/{user.stream_id}/index.m3u8"

            async def live_at() -> int:
                response = await http.get(playlist)
                return live_position(response.text) if response.status_code == 200 else 0

            listeners: list[Listener] = []
            publisher: Listener | None = None
            try:
                await wait_for(live_at, "the live playlist through the edge", 60)
                channel = f"chat:{user.stream_id}"
                ws = edge.url.replace("https", "wss") + "/connection/websocket"
                for _ in range(LISTENERS):
                    listeners.append(
                        await listen(
                            ws, channel, user.token, ssl_context=tls, max_reconnect_delay=1.0
                        )
                    )
                # The publisher talks to the survivor directly: what it gets acked counts.
                survivor_ws = cluster.gateways[1].replace("http", "ws") + "/connection/websocket"
                publisher = await listen(survivor_ws, channel, user.token)

                viewer = asyncio.create_task(_watch(http, playlist))
                acked: list[str] = []
                for index in range(BURST):
                    if index == BURST // 3:
                        cluster.kill("gateway-0")
                    text = f"edge {uuid.uuid4().hex[:6]} {index}"
                    with contextlib.suppress(centrifuge.CentrifugeError):
                        await publisher.sub.publish({"text": text})
                        acked.append(text)
                    await asyncio.sleep(0.05)
                assert len(acked) == BURST, "the survivor refused publishes"

                counts: list[dict[str, int]] = [{} for _ in listeners]

                async def everyone_has_everything() -> bool:
                    for listener, seen in zip(listeners, counts, strict=True):
                        for data in listener.drain():
                            if data.get("type") == "message" and data.get("text") in acked:
                                seen[data["text"]] = seen.get(data["text"], 0) + 1
                    return all(set(acked) <= set(seen) for seen in counts)

                await wait_for(everyone_has_everything, "every listener to get every message", 60)
                assert all(set(seen.values()) == {1} for seen in counts), "a duplicate line"
                moved = [ls for ls in listeners if len(ls.subscribed) > 1]
                assert moved, "no listener was on the killed gateway"
                assert all(ls.subscribed[-1].recovered for ls in moved)

                statuses, positions = await viewer
                assert statuses.count(200) >= len(statuses) - 1, statuses
                assert positions[-1] > positions[0], positions
                direct_ok = await direct.get(playlist)
                assert direct_ok.status_code == 200
                # The operator dashboard's numbers, from the survivor's /metrics.
                metrics = (await direct.get("/metrics")).text
                assert _sample(metrics, "videopick_live_streams") >= 1
                assert _sample(metrics, "videopick_live_viewers") >= 1
                assert _sample(metrics, "videopick_chat_deliveries_total") >= BURST
            finally:
                cluster.revive("gateway-0")
                for listener in [*listeners, *([publisher] if publisher else [])]:
                    with contextlib.suppress(Exception):
                        await listener.close()
                if live.returncode is None:
                    live.kill()
                    await live.wait()
            await cluster.wait_ready()


async def _watch(http: httpx.AsyncClient, playlist: str) -> tuple[list[int], list[int]]:
    """A viewer reloading the playlist every half second for ten seconds."""
    statuses: list[int] = []
    positions: list[int] = []
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            response = await http.get(playlist)
        except httpx.HTTPError:
            statuses.append(0)
        else:
            statuses.append(response.status_code)
            if response.status_code == 200:
                positions.append(live_position(response.text))
        await asyncio.sleep(0.5)
    return statuses, positions


def _sample(exposition: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", exposition, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))
