"""The newcomer's path: ``videopick up``, then ``videopick demo``: a live channel that plays
and an uploaded video that plays, from the public interface only.

The platform runs as ``make run`` runs it (tests/fixtures/platform.py); the demo runs as a
newcomer types it. The checks are what a player does: read the LL-HLS playlist, fetch
the init segment and the parts it lists, decode them with PyAV; then the same for the
video's master playlist, one rendition and its segments.
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import av
import httpx
import pytest

from common.nats_server import free_port
from tests.fixtures.platform import Platform, running_platform

pytestmark = pytest.mark.e2e

LIVE_S = 20
LIVE_DEADLINE_S = 90.0  # demo started → LIVE printed, parts listed (a busy 2-core box)
VIDEO_DEADLINE_S = 300.0  # demo started → the clip transcoded and published
EXIT_GRACE_S = 60.0
T = TypeVar("T")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("platform")) as running:
        yield running


@dataclass(frozen=True)
class Demo:
    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def context(self) -> str:
        """The demo's output, for failure messages (the platform's logs join the report)."""
        return f"demo out:\n{self.out.read_text()}\ndemo err:\n{self.err.read_text()}"


@contextlib.contextmanager
def running_demo(args: list[str], folder: Path) -> Iterator[Demo]:
    """``videopick demo ARGS`` as a newcomer types it; killed on the way out if still running."""
    out, err = folder / "demo.out", folder / "demo.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "common.cli", "demo", *args], stdout=stdout, stderr=stderr
        )
    try:
        yield Demo(process, out, err)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _until(
    what: str,
    deadline: float,
    probe: Callable[[], T | None],
    context: Callable[[], str],
    demo: subprocess.Popen[bytes] | None = None,
) -> T:
    """Poll ``probe`` until it gives a value; fail at ``deadline`` or if ``demo`` exits."""
    while True:
        exited = demo is not None and demo.poll() is not None
        value = probe()
        if value is not None:
            return value
        assert not exited, f"the demo exited before {what}\n{context()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{context()}"
        time.sleep(0.5)


def _live_stream_id(demo: Demo, deadline: float) -> str:
    """The stream id in the demo's LIVE line (its watch URL)."""
    stream_id: str = _until(
        "the LIVE line",
        deadline,
        lambda: (m := re.search(r"/watch/(\S+)", demo.out.read_text())) and m.group(1),
        demo.context,
        demo.process,
    )
    return stream_id


def _wait_offline(http: httpx.Client, stream_id: str, demo: Demo) -> None:
    _until(
        "the channel to go offline",
        time.monotonic() + 30,
        lambda: http.get(f"/api/v2/streams/{stream_id}").json()["live"] is False or None,
        demo.context,
    )


def _decode(body: bytes) -> tuple[int, int]:
    """(video frames, audio frames) PyAV decodes from an fMP4 init + fragments."""
    with av.open(io.BytesIO(body), mode="r", format="mp4") as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(body), mode="r", format="mp4") as container:
        audio = sum(1 for _ in container.decode(audio=0)) if container.streams.audio else 0
    return video, audio


def _live_media(http: httpx.Client, stream_id: str) -> bytes | None:
    """Init + the parts of a whole segment the playlist lists part by part, once it has one."""
    response = http.get(f"/live/{stream_id}/index.m3u8")
    if response.status_code != 200:
        return None
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', response.text)
    if init is None:
        return None
    parts: list[str] = []
    whole: list[str] = []
    for line in response.text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            uri = re.search(r'URI="([^"]+)"', line)
            assert uri is not None, line
            parts.append(uri.group(1))
            if len(parts) == 1 and "INDEPENDENT=YES" not in line:
                parts = []  # a segment seen from its middle: not whole
        elif line.startswith("#EXTINF"):
            if parts:
                whole = parts
                break
            parts = []
    if not whole:
        return None
    body = http.get(f"/live/{stream_id}/{init.group(1)}").content
    for part in whole:
        fetched = http.get(f"/live/{stream_id}/{part}")
        assert fetched.status_code == 200, f"{part}: {fetched.status_code}"
        body += fetched.content
    return body


def _vod_media(http: httpx.Client, video_id: str) -> tuple[str, bytes]:
    """One rendition of the video: its name, and init + every segment."""
    master = http.get(f"/vod/{video_id}/master.m3u8")
    assert master.status_code == 200, master.text
    assert "#EXT-X-STREAM-INF" in master.text
    rendition = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    folder = rendition.rpartition("/")[0]
    playlist = http.get(f"/vod/{video_id}/{rendition}")
    assert playlist.status_code == 200, playlist.text
    assert playlist.text.rstrip().endswith("#EXT-X-ENDLIST")
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist.text)
    assert init is not None, playlist.text
    segments = [line for line in playlist.text.splitlines() if line and not line.startswith("#")]
    prefix = f"/vod/{video_id}/{folder}/" if folder else f"/vod/{video_id}/"
    body = http.get(prefix + init.group(1)).content
    for segment in segments:
        fetched = http.get(prefix + segment)
        assert fetched.status_code == 200, f"{segment}: {fetched.status_code}"
        body += fetched.content
    return rendition, body


def test_demo_goes_live_and_its_clip_plays(platform: Platform, tmp_path: Path) -> None:
    started = time.monotonic()
    # No --rtmp: the demo publishes where GET /streams/key says (VIDEOPICK_RTMP_PUBLIC_URL).
    args = ["--gateway", platform.base_url, "--duration", str(LIVE_S)]
    with (
        running_demo(args, tmp_path) as demo,
        httpx.Client(base_url=platform.base_url, timeout=30) as http,
    ):
        live_deadline = started + LIVE_DEADLINE_S
        stream_id = _live_stream_id(demo, live_deadline)
        # The catalog lists the channel as live while the demo publishes.
        live = http.get("/api/v2/streams/live").json()
        assert stream_id in [channel["stream_id"] for channel in live]
        channel = http.get(f"/api/v2/streams/{stream_id}").json()
        assert channel["live"] is True
        assert channel["title"].startswith("VideoPick demo")
        assert (channel["width"], channel["height"]) == (640, 360)

        # The LL-HLS playlist lists parts, and what they hold decodes.
        media = _until(
            "a whole live segment",
            live_deadline,
            lambda: _live_media(http, stream_id),
            demo.context,
            demo.process,
        )
        video_frames, audio_frames = _decode(media)
        assert video_frames == 30  # one 1 s GOP at 30 fps
        assert audio_frames > 0

        # The uploaded clip is transcoded and published; a rendition decodes.
        video_id = _until(
            "the VIDEO line",
            started + VIDEO_DEADLINE_S,
            lambda: (m := re.search(r"/v/(\S+)", demo.out.read_text())) and m.group(1),
            demo.context,
            demo.process,
        )
        assert "VIDEO  " in demo.out.read_text(), demo.context()  # ready, not "processing"
        rendition, body = _vod_media(http, video_id)
        video_frames, audio_frames = _decode(body)
        assert video_frames >= 9 * 30, rendition  # the ~10 s clip at 30 fps
        assert audio_frames > 0
        catalog = http.get(f"/api/v2/videos/{video_id}").json()
        assert catalog["status"] == "ready"

        # At --duration the demo stops the live itself and exits cleanly.
        exit_by = started + LIVE_S + EXIT_GRACE_S + VIDEO_DEADLINE_S
        assert demo.process.wait(exit_by - time.monotonic()) == 0, demo.context()
        assert "Demo finished." in demo.out.read_text()
        _wait_offline(http, stream_id, demo)


def test_ctrl_c_stops_the_live_cleanly(platform: Platform, tmp_path: Path) -> None:
    started = time.monotonic()
    args = ["--gateway", platform.base_url, "--rtmp", platform.rtmp_url, "--no-upload"]
    with (
        running_demo(args, tmp_path) as demo,
        httpx.Client(base_url=platform.base_url, timeout=30) as http,
    ):
        stream_id = _live_stream_id(demo, started + LIVE_DEADLINE_S)
        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(EXIT_GRACE_S) == 0, demo.context()
        assert "Stopping the live stream" in demo.out.read_text()
        assert demo.err.read_text() == ""
        # POST /streams/stop ended the broadcast: offline at once, not after the
        # reconnect window a dropped publisher gets.
        _wait_offline(http, stream_id, demo)


def test_demo_without_a_platform_exits_with_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    args = ["--gateway", f"http://127.0.0.1:{port}", "--no-upload"]
    with running_demo(args, tmp_path) as demo:
        assert demo.process.wait(60) == 1
    lines = demo.err.read_text().strip().splitlines()
    assert lines == [
        f"error: cannot reach the gateway at http://127.0.0.1:{port} (connection refused); "
        "start the platform first: make run (videopick up)"
    ]
    assert demo.out.read_text() == ""
