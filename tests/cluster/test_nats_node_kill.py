"""kill -9 a NATS node during a live stream, a chat burst and a transcode.

The node killed leads the CHAT stream, so the burst crosses a leader election. No
event a client saw acknowledged is lost, the live playlist keeps moving on the two
survivors, and when the node returns every stream is back at three current replicas
and every durable consumer has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import centrifuge  # type: ignore[import-untyped]
import httpx
import pytest
from nats.aio.client import Client

from events.streams import ALL_STREAMS
from tests.cluster.conftest import Cluster, wait_for
from tests.cluster.media import live_position, make_video, publish_live, stored, upload
from tests.integration.chat_stack import listen, register

pytestmark = pytest.mark.cluster

BURST = 30
OUTAGE_S = 8.0
LIVE_S = 60.0
# A handler that failed while its stream had no leader is retried after its policy's
# backoff (up to 60 s by the fourth delivery), and a fetch cut by the kill leaves its
# messages to AckWait (60 s): catching up may take both.
CATCH_UP_S = 150.0


@pytest.mark.timeout(480)
async def test_nats_node_killed_loses_no_acknowledged_event(
    cluster: Cluster, tmp_path: Any
) -> None:
    video = await asyncio.to_thread(make_video, tmp_path / "clip.mp4")
    nc = await cluster.nats()
    events: list[str] = []

    async def on_event(msg: Any) -> None:
        events.append(msg.subject)

    await nc.subscribe("transcode.>", cb=on_event)
    live: asyncio.subprocess.Process | None = None
    async with httpx.AsyncClient(base_url=cluster.gateways[0], timeout=30.0) as http:
        user = await register(http, f"nk{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {user.token}"}
        try:
            # A live stream, watched through the second gateway.
            key = (await http.get("/api/v2/streams/key", headers=headers)).json()["stream_key"]
            started = await http.post(
                "/api/v2/streams/start", json={"title": "fault", "description": ""}, headers=headers
            )
            assert started.status_code in (200, 201), started.text
            rtmp = f"rtmp://127.0.0.1:{cluster.servers.rtmp_port}/live/{key}"
            live = await publish_live(rtmp, LIVE_S)
            playlist_url = f"{cluster.gateways[1]}/live/{user.stream_id}/index.m3u8"

            async def live_at() -> int:
                response = await http.get(playlist_url)
                return live_position(response.text) if response.status_code == 200 else 0

            await wait_for(live_at, "the live playlist", 60)

            # A transcode in flight.
            upload_id = await upload(http, headers, video)

            async def video_id() -> str | None:
                status = await http.get(f"/api/v2/upload/{upload_id}", headers=headers)
                return status.json().get("video_id") if status.status_code == 200 else None

            vid: str = await wait_for(video_id, "the upload to become a video", 90)

            async def transcoding() -> bool:
                return f"transcode.progress.{vid}" in events

            await wait_for(transcoding, "the transcode to start", 90)

            # Chat through the first gateway; kill the CHAT stream's leader mid-burst.
            ws = cluster.gateways[0].replace("http", "ws") + "/connection/websocket"
            listener = await listen(ws, f"chat:{user.stream_id}", user.token)
            leader = (await nc.jetstream().stream_info("CHAT")).cluster
            assert leader is not None
            victim = next(n for n in cluster.nats_nodes if n.name == leader.leader)
            before_kill = await live_at()
            acked: list[str] = []
            killed_at = time.monotonic()
            try:
                for index in range(BURST):
                    if index == BURST // 3:
                        victim.kill()
                        killed_at = time.monotonic()
                    text = f"burst {uuid.uuid4().hex[:6]} {index}"
                    with contextlib.suppress(centrifuge.CentrifugeError):
                        await listener.sub.publish({"text": text})
                        acked.append(text)  # only what the server acknowledged
                    await asyncio.sleep(0.1)
                await wait_for(
                    lambda: _live_moved(live_at, before_kill), "live to move on 2 nodes", 30
                )
                await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed_at)))
            finally:
                await asyncio.to_thread(victim.start)
                await asyncio.to_thread(victim.wait_ready)

            assert len(acked) >= BURST // 2, f"only {len(acked)} of {BURST} publishes acked"
            seen: dict[str, int] = {}

            async def delivered() -> bool:
                for data in listener.drain():
                    if data.get("type") == "message" and data.get("text") in acked:
                        seen[data["text"]] = seen.get(data["text"], 0) + 1
                return set(acked) <= set(seen)

            await wait_for(delivered, "every acknowledged chat message", 90)
            await listener.close()
            assert set(seen.values()) == {1}, "a chat line was delivered twice"
            kept = {m.get("text") for m in await stored(nc, f"chat.message.{user.stream_id}")}
            assert set(acked) <= kept, set(acked) - kept

            await wait_for(lambda: _has(events, f"transcode.completed.{vid}"), "the transcode", 150)
            assert len(await stored(nc, f"transcode.completed.{vid}")) == 1
        finally:
            if live is not None and live.returncode is None:
                live.kill()
                await live.wait()

        await wait_for(lambda: _replicated(nc), "three current replicas of every stream", 60)
        lagging: list[str] = []

        async def caught_up() -> bool:
            lagging[:] = await _lagging_consumers(nc)
            return not lagging

        try:
            await wait_for(caught_up, "every durable consumer caught up", CATCH_UP_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still behind: {lagging}") from None
        await wait_for(lambda: _same_everywhere(cluster), "the same CHAT on every node", 30)
    await nc.close()


async def _live_moved(live_at: Any, before: int) -> bool:
    return bool(await live_at() > before)


async def _has(events: list[str], subject: str) -> bool:
    return subject in events


async def _replicated(nc: Client) -> bool:
    js = nc.jetstream()
    for stream in ALL_STREAMS:
        cluster = (await js.stream_info(stream.name)).cluster
        if cluster is None or cluster.leader is None:
            return False
        peers = cluster.replicas or []
        if len(peers) != 2 or not all(p.current and not p.offline for p in peers):
            return False
    return True


async def _lagging_consumers(nc: Client) -> list[str]:
    """Each durable consumer with messages pending or unacknowledged, and how many."""
    js = nc.jetstream()
    lagging: list[str] = []
    for name in ("CHAT", "MEDIA", "UPLOADS", "ACCOUNTS"):
        for info in await js.consumers_info(name):
            if info.config.durable_name and (info.num_pending or info.num_ack_pending):
                lagging.append(
                    f"{name}/{info.config.durable_name} pending={info.num_pending}"
                    f" ack_pending={info.num_ack_pending} redelivered={info.num_redelivered}"
                )
    return lagging


async def _same_everywhere(cluster: Cluster) -> bool:
    """Each node's own copy of CHAT ends at the same sequence."""
    last: set[int] = set()
    async with httpx.AsyncClient(timeout=2.0) as http:
        for node in cluster.nats_nodes:
            jsz = (await http.get(f"{node.monitor_url}/jsz?streams=true")).json()
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    if stream["name"] == "CHAT":
                        last.add(stream["state"]["last_seq"])
    return len(last) == 1
