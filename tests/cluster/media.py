"""Media and event helpers shared by the cluster fault tests."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client
from nats.js.api import DeliverPolicy

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


async def live_publisher(url: str, seconds: float) -> asyncio.subprocess.Process:
    """ffmpeg publishing a real-time test pattern over RTMP (OBS's part)."""
    return await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
        "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def stored(nc: Client, subject: str) -> list[dict[str, Any]]:
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


async def publish_live(url: str, seconds: float) -> asyncio.subprocess.Process:
    """Ingest learns a new channel's key from an event: retry until it accepts it."""
    deadline = time.monotonic() + 30
    while True:
        process = await live_publisher(url, seconds)
        try:
            await asyncio.wait_for(process.wait(), 3.0)
        except TimeoutError:
            return process  # still publishing: the key was accepted
        if time.monotonic() > deadline:
            raise AssertionError("ingest never accepted the stream key")


def live_position(playlist: str) -> int:
    """Media sequence of the last segment listed: grows while the stream is live."""
    match = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    return (int(match.group(1)) if match else 0) + playlist.count("#EXTINF")
