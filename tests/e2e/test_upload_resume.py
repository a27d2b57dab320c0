"""Issue #6's "done when": from a fresh ``videopick up``, a large video uploaded with
tus-js-client survives a cut connection and becomes a playable adaptive video with a
poster and scrub previews.

The platform runs as ``make run`` starts it (every component its own process, NATS as
a child, SQLite, the folder store), behind the cutting proxy of
tests/fixtures/cut_proxy.py: the proxy is the public URL, so every tus request goes
through it. The clip (ffmpeg CLI, 1280x720, noisy so that it weighs ~60 MB) is sent in
one PATCH, which the proxy cuts at a random point; tus-js-client's attempt fails, a new
Upload finds the stored URL by fingerprint and resumes (tests/js/tus_cut_resume.mjs).
Then the public API must report the video ready, and everything a player fetches must
decode: the master playlist, every segment of every rendition, the poster and the
sprite sheet its WebVTT track points into.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from common.components import available_components
from common.nats_server import free_port
from tests.fixtures.cut_proxy import cut_proxy
from tests.fixtures.platform import async_running_platform
from tests.integration.test_tus_js import node_tus, run_tus_js  # noqa: F401 - fixture
from transcoder.playlists import parse_media_playlist

pytestmark = pytest.mark.e2e

READY_TIMEOUT_S = 240.0
CLIP_SECONDS = 10
PART = 8 * 1024 * 1024  # the gateway's part size (tus_chunk_size)
FFMPEG = "/usr/bin/ffmpeg"
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_CUE = re.compile(
    r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n"
    r"sprite\.jpg#xywh=(\d+),(\d+),(\d+),(\d+)"
)


def make_large_clip(path: Path) -> Path:
    # Noise keeps x264 from shrinking it: ~60 MB for 10 s, in a few seconds.
    subprocess.run(
        [
            FFMPEG,
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1280x720:rate=30,noise=alls=8:allf=t",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            str(CLIP_SECONDS),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "20",
            "-g",
            "60",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            str(path),
        ],
        check=True,
    )
    return path


async def wait_ready(http: httpx.AsyncClient, upload_id: str, headers: dict[str, str]) -> str:
    """Poll the upload's status until its video is ready; the video id."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (await http.get(f"/api/v2/upload/{upload_id}", headers=headers)).json()
        assert status.get("state") not in {"rejected", "expired", "cancelled"}, status
        if status.get("state") == "ready" and status.get("video_id"):
            video_id: str = status["video_id"]
            video = (await http.get(f"/api/v2/videos/{video_id}")).json()
            if video.get("status") == "ready":
                return video_id
            assert video.get("status") != "failed", video
        await asyncio.sleep(1.0)  # the transcode takes tens of seconds; deadline above
    raise AssertionError(f"not ready in {READY_TIMEOUT_S} s: {status}")


def decode_rendition(data: bytes) -> tuple[int, tuple[int, int], float, int]:
    """(video frames, size, seconds, audio frames) of init + all segments."""
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = list(container.decode(video=0))
        size = (frames[0].width, frames[0].height)
        first, last = frames[0].time, frames[-1].time
        assert first is not None
        assert last is not None
    with av.open(io.BytesIO(data), mode="r") as container:
        audio = len(list(container.decode(audio=0)))
    return len(frames), size, last - first, audio


async def check_playable(http: httpx.AsyncClient, video_id: str) -> list[str]:
    """Everything a player fetches decodes; the rendition names."""
    master = (await http.get(f"/vod/{video_id}/master.m3u8")).raise_for_status().text
    lines = master.splitlines()
    variants = [
        (dict(_ATTRIBUTE.findall(line.split(":", 1)[1])), lines[index + 1])
        for index, line in enumerate(lines)
        if line.startswith("#EXT-X-STREAM-INF:")
    ]
    assert len(variants) >= 2, master  # adaptive: a 720p source makes several rungs
    names = []
    for attributes, uri in variants:
        width, height = (int(v) for v in attributes["RESOLUTION"].split("x"))
        assert int(attributes["BANDWIDTH"]) > 0
        assert attributes["CODECS"].strip('"').startswith("avc1.")
        folder = uri.rsplit("/", 1)[0]
        base = f"/vod/{video_id}/{folder}/"
        playlist = (await http.get(base + "index.m3u8")).raise_for_status().text
        assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
        data = (await http.get(base + "init.mp4")).raise_for_status().content
        for segment in parse_media_playlist(playlist):
            data += (await http.get(base + segment.uri)).raise_for_status().content
        frames, size, seconds, audio = await asyncio.to_thread(decode_rendition, data)
        assert size == (width, height)
        assert frames >= CLIP_SECONDS * 30 - 2
        assert seconds == pytest.approx(CLIP_SECONDS, abs=0.2)
        assert audio > 0
        names.append(folder)
    poster = Image.open(io.BytesIO((await http.get(f"/vod/{video_id}/poster.jpg")).content))
    assert poster.format == "JPEG"
    poster.load()
    sprite = Image.open(io.BytesIO((await http.get(f"/vod/{video_id}/sprite.jpg")).content))
    sprite.load()
    vtt = (await http.get(f"/vod/{video_id}/sprite.vtt")).raise_for_status().text
    cues = _CUE.findall(vtt)
    assert vtt.startswith("WEBVTT")
    assert len(cues) >= 2, vtt
    for cue in cues:
        x, y, w, h = (int(v) for v in cue[8:])
        assert x + w <= sprite.size[0]
        assert y + h <= sprite.size[1]
    return names


async def test_a_large_upload_cut_mid_way_becomes_a_playable_video(
    node_tus: str,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    assert {"gateway", "uploader", "transcoder"} <= set(available_components())
    clip = await asyncio.to_thread(make_large_clip, tmp_path / "large.mp4")
    size = clip.stat().st_size
    seed = int(os.environ.get("VIDEOPICK_TEST_SEED") or random.randrange(2**32))
    print(f"VIDEOPICK_TEST_SEED={seed}, clip {size / 1e6:.1f} MB")
    http_port = free_port()
    async with (
        cut_proxy(seed, upstream_port=http_port) as proxy,
        async_running_platform(tmp_path, http_port=http_port, public_url=proxy.url) as platform,
        httpx.AsyncClient(base_url=platform.base_url, timeout=30.0) as http,
    ):
        register = await http.post(
            "/api/v2/auth/register",
            json={
                "username": "uploader1",
                "email": "u1@example.com",
                "password": "pw-correct-horse",
            },
        )
        assert register.status_code == 201, register.text
        token = register.json()["access_token"]
        workdir = tmp_path / "node"
        workdir.mkdir()
        (record,) = await run_tus_js(node_tus, f"{proxy.url}/files/", token, [clip], workdir)
        assert record["firstOk"] is False, record
        assert record["resumedOk"], record
        assert record["url"] == record["firstUrl"] == record["previousUrls"][0]
        upload_id = record["url"].rsplit("/", 1)[1]
        cut = proxy.cuts[upload_id]
        assert 0 < cut.forwarded < size
        resumed = proxy.patches[upload_id][-1]
        assert resumed.upload_offset <= cut.forwarded
        if cut.forwarded >= 2 * PART:
            # The parts written before the cut were durable, and were kept.
            assert resumed.upload_offset >= PART
        print(f"cut after {cut.forwarded} bytes, resumed at {resumed.upload_offset}")
        video_id = await wait_ready(http, upload_id, {"Authorization": f"Bearer {token}"})
        renditions = await check_playable(http, video_id)
        video = (await http.get(f"/api/v2/videos/{video_id}")).json()
        assert video["poster_url"], video
        assert video["playback_url"], video
        print(f"video {video_id}: renditions {renditions}")
