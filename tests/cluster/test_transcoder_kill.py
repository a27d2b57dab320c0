"""kill -9 a transcoder mid-job: the other worker finishes it, once, under the same keys."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.api import DeliverPolicy

from tests.cluster.conftest import Cluster, wait_for
from tests.integration.chat_stack import register

pytestmark = pytest.mark.cluster

DURATION_S = 20


def make_video(path: Path) -> bytes:
    """A 20 s 640x360 H.264/AAC clip: long enough to be caught mid-transcode."""
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440",
            "-t", str(DURATION_S), "-c:v", "libx264", "-preset", "ultrafast",
            "-c:a", "aac", "-movflags", "+faststart", str(path),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path.read_bytes()


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def upload(http: httpx.AsyncClient, headers: dict[str, str], data: bytes) -> str:
    created = await http.post(
        "/api/v2/upload/init",
        json={"filename": "clip.mp4", "size": len(data), "title": "Kill me"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    upload_id = str(created.json()["upload_id"])
    sent = await http.post(
        "/api/v2/upload/chunk",
        params={"upload_id": upload_id, "offset": 0},
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert sent.status_code == 200, sent.text
    return upload_id


async def test_transcoder_killed_mid_job_finishes_once_elsewhere(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = await asyncio.to_thread(make_video, tmp_path / "clip.mp4")
    nc = await cluster.nats()
    events: list[tuple[str, dict[str, Any]]] = []

    async def on_event(msg: Any) -> None:
        events.append((msg.subject, json.loads(msg.data)))

    await nc.subscribe("transcode.>", cb=on_event)
    try:
        async with httpx.AsyncClient(base_url=cluster.gateways[0], timeout=30.0) as http:
            user = await register(http, f"tc{uuid.uuid4().hex[:8]}")
            headers = {"Authorization": f"Bearer {user.token}"}
            upload_id = await upload(http, headers, data)

            async def video_id() -> str | None:
                status = await http.get(f"/api/v2/upload/{upload_id}", headers=headers)
                return status.json().get("video_id") if status.status_code == 200 else None

            vid: str = await wait_for(video_id, "the upload to become a video", 90)

            async def working() -> str | None:
                if not any(s == f"transcode.progress.{vid}" for s, _ in events):
                    return None
                for name in ("transcoder-0", "transcoder-1"):
                    if children_of(cluster.pid(name)):
                        return name
                return None

            victim: str = await wait_for(working, "a transcoder to start the job", 90)
            cluster.kill(victim, group=True)
            try:
                await wait_for(
                    lambda: _has(events, f"transcode.completed.{vid}"),
                    "the other transcoder to finish the job",
                    150,
                )
            finally:
                cluster.revive(victim)

            completed = await _stored(nc, f"transcode.completed.{vid}")
            published = await _stored(nc, f"video.published.{vid}")
            assert len(completed) == 1, completed
            assert len(published) == 1, published
            assert not await _stored(nc, f"transcode.failed.{vid}")
            done = completed[0]

        # One video under the keys the event names, served by the other gateway.
        async with httpx.AsyncClient(base_url=cluster.gateways[1], timeout=30.0) as http:
            master = await http.get(f"/vod/{vid}/master.m3u8")
            assert master.status_code == 200, master.text
            for rendition in done["renditions"]:
                name = rendition["playlist_key"].rsplit("/", 1)[-1]
                playlist = await http.get(f"/vod/{vid}/{rendition['name']}/{name}")
                if playlist.status_code == 404:
                    playlist = await http.get(f"/vod/{vid}/{name}")
                assert playlist.status_code == 200, playlist.text
                assert "#EXT-X-ENDLIST" in playlist.text
        keys = _object_keys(cluster, vid)
        named = {done["master_key"], done["poster_key"], *done["thumbnail_keys"]}
        named |= {r["playlist_key"] for r in done["renditions"]}
        assert named <= keys, named - keys
    finally:
        await nc.close()


async def _has(events: list[tuple[str, dict[str, Any]]], subject: str) -> bool:
    return any(s == subject for s, _ in events)


async def _stored(nc: Any, subject: str) -> list[dict[str, Any]]:
    """Every message JetStream kept on ``subject`` (duplicates would show here)."""
    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found: list[dict[str, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except TimeoutError:
                return found
            found.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()


def _object_keys(cluster: Cluster, video_id: str) -> set[str]:
    from minio import Minio

    from common.cluster import MINIO_PASSWORD, MINIO_USER

    client = Minio(cluster.servers.minio.endpoint, MINIO_USER, MINIO_PASSWORD, secure=False)
    return {
        obj.object_name
        for obj in client.list_objects("videopick", recursive=True)
        if obj.object_name and video_id in obj.object_name
    }
