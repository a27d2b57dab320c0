"""kill -9 a transcoder mid-job: the other worker finishes it, once, under the same keys."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.conftest import Cluster, wait_for
from tests.cluster.media import make_video, stored, upload
from tests.fixtures.processes import children_of
from tests.integration.chat_stack import register

pytestmark = pytest.mark.cluster


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

            completed = await stored(nc, f"transcode.completed.{vid}")
            published = await stored(nc, f"video.published.{vid}")
            assert len(completed) == 1, completed
            assert len(published) == 1, published
            assert not await stored(nc, f"transcode.failed.{vid}")
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


def _object_keys(cluster: Cluster, video_id: str) -> set[str]:
    from minio import Minio

    from common.cluster import MINIO_PASSWORD, MINIO_USER

    client = Minio(cluster.servers.minio.endpoint, MINIO_USER, MINIO_PASSWORD, secure=False)
    return {
        obj.object_name
        for obj in client.list_objects("videopick", recursive=True)
        if obj.object_name and video_id in obj.object_name
    }
