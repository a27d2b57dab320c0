"""The demo's RTMP publisher against PyAV's own RTMP output (libavformat), same source.

    .venv/bin/pytest -m bench tests/bench/bench_demo_publisher.py -s

Why the demo has its own asyncio publisher: this measures the choice. Each side
publishes the same synthetic source (``ingest.synthetic``: 640x360 at 30 fps, libx264
veryfast zerolatency, AAC) in real time for ``VIDEOPICK_BENCH_PUBLISH_S`` seconds
(default 10) to an RTMP server in another process (the project's ``RTMPServer`` with a
handler that counts what arrives), from a publisher process that also runs an asyncio
loop ticking every 10 ms, as the demo's HTTP polling and Ctrl-C handling do. Reported:

- delivered: video frames the server received / frames sent;
- loop stall: the longest gap between two 10 ms ticks in the publisher process.
  libavformat's network calls hold the GIL (tests/integration/test_ingest_rtmp.py runs
  its PyAV publisher in a child for that reason), so any wait on the socket freezes
  every other task of the process;
- CPU: the publisher process's user+system seconds per second of media;
- refusal: a wrong key — does the caller learn the server's reason, and how fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

pytestmark = pytest.mark.bench

SECONDS = float(os.environ.get("VIDEOPICK_BENCH_PUBLISH_S", "10"))
KEY = "bench-key"
MODULE = "tests.bench.bench_demo_publisher"


# --- the server child ------------------------------------------------------------------


async def _serve() -> None:
    """Accept ``KEY``, refuse others; on stdin EOF print what arrived as JSON."""
    from ingest.rtmp.events import ConnectRequested, Event, MediaMessage, PublishRequested
    from ingest.rtmp.server import CloseKind, RTMPLink, RTMPServer

    counts = {"video": 0, "audio": 0}

    class Handler:
        async def handle(self, link: RTMPLink, event: Event) -> None:
            if isinstance(event, ConnectRequested):
                link.send(link.conn.accept_connect())
            elif isinstance(event, PublishRequested):
                if event.name == KEY:
                    link.send(link.conn.accept_publish())
                else:
                    link.send(link.conn.reject_publish("NetStream.Publish.BadName", "wrong key"))
                    link.close(CloseKind.LOCAL, "bad key", linger=True)
            elif isinstance(event, MediaMessage) and event.payload[1:2] == b"\x01":
                # Frames only (AVC NALU / AAC raw), not the sequence headers.
                counts["video" if event.is_video else "audio"] += 1

        async def closed(self, link: RTMPLink, kind: CloseKind, detail: str) -> None:
            return None

    server = RTMPServer(lambda _link: Handler(), host="127.0.0.1", port=0)
    await server.start()
    print(f"PORT {server.port}", flush=True)  # structlog writes to stdout too
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()
    print(f"RESULT {json.dumps(counts)}", flush=True)


# --- the publisher children -------------------------------------------------------------


def _pyav_publish(url: str, seconds: float) -> int:
    """libavformat's RTMP client: ``av.open(url, "w", format="flv")``, paced in real time."""
    import av
    from av.video.reformatter import VideoReformatter

    from ingest.synthetic import PatternPainter, SourceConfig, _audio_frame, _rgb_frame

    cfg = SourceConfig()
    painter, reformatter = PatternPainter(cfg), VideoReformatter()
    frames = round(seconds * cfg.fps)
    with av.open(url, mode="w", format="flv") as out:
        video = out.add_stream("libx264", rate=cfg.fps)
        video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
        video.bit_rate = cfg.video_kbps * 1000
        gop = str(cfg.fps)
        video.codec_context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "g": gop,
            "keyint_min": gop,
            "sc_threshold": "0",
        }
        audio = out.add_stream("aac", rate=cfg.sample_rate)
        audio.layout = "stereo"
        audio.bit_rate = cfg.audio_kbps * 1000
        samples, started = 0, time.monotonic()
        for index in range(frames):
            picture = reformatter.reformat(_rgb_frame(painter.paint(index)), format="yuv420p")
            picture.pts = index
            out.mux(video.encode(picture))
            end = (index + 1) * cfg.sample_rate // cfg.fps
            while samples < end:
                out.mux(audio.encode(_audio_frame(samples, 1024, cfg.sample_rate)))
                samples += 1024
            delay = started + (index + 1) / cfg.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        out.mux(video.encode(None))
    return frames


async def _publish(side: str, url: str, seconds: float) -> dict[str, Any]:
    from ingest.synthetic_live import publish_synthetic

    worst, last, running = 0.0, time.monotonic(), True

    async def tick() -> None:
        nonlocal worst, last
        while running:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last), now

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    error, frames = "", 0
    try:
        if side == "ours":
            frames = (await publish_synthetic(url, duration_s=seconds)).frames
        else:
            # In a thread, as an asyncio program would have to run it.
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()

            def work() -> None:
                try:
                    result = _pyav_publish(url, seconds)
                    loop.call_soon_threadsafe(done.set_result, result)
                except Exception as exc:
                    loop.call_soon_threadsafe(done.set_exception, exc)

            threading.Thread(target=work, daemon=True).start()
            frames = await done
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:160]
    running = False
    await ticker
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "frames": frames,
        "wall_s": time.monotonic() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "stall_ms": worst * 1000,
        "error": error,
    }


# --- the benchmark ----------------------------------------------------------------------


@dataclass
class Run:
    side: str
    frames: int
    received: int
    wall_s: float
    cpu_s: float
    stall_ms: float
    error: str


def _result(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def _run(side: str, key: str, seconds: float) -> Run:
    server = subprocess.Popen(
        [sys.executable, "-m", MODULE, "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = ""
        while not line.startswith("PORT "):
            line = server.stdout.readline()
            assert line, "the server child exited"
        port = int(line.split()[1])
        url = f"rtmp://127.0.0.1:{port}/live/{key}"
        publisher = subprocess.run(
            [sys.executable, "-m", MODULE, "publish", side, url, str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
        result = _result(publisher.stdout)
        counts, _ = server.communicate("", timeout=30)
        received = _result(counts)["video"]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return Run(side, result["frames"], received, result["wall_s"], result["cpu_s"],
               result["stall_ms"], result["error"])  # fmt: skip


def test_demo_publisher_against_pyav_rtmp_output() -> None:
    runs = {side: _run(side, KEY, SECONDS) for side in ("ours", "pyav")}
    refusals = {side: _run(side, "a-wrong-key", 3.0) for side in ("ours", "pyav")}
    ours, peer = runs["ours"], runs["pyav"]
    print(f"\n{SECONDS:g} s of 640x360p30 + AAC, real time, to an RTMP server in another process")
    print(f"{'':<28}{'ours (asyncio)':>18}{'PyAV rtmp output':>20}{'ratio':>8}")
    rows = [
        ("video frames delivered", f"{ours.received}/{ours.frames}",
         f"{peer.received}/{peer.frames}", ""),
        ("event-loop stall, max ms", f"{ours.stall_ms:.0f}", f"{peer.stall_ms:.0f}",
         f"{ours.stall_ms / peer.stall_ms:.2f}" if peer.stall_ms else "-"),
        ("CPU s per media s", f"{ours.cpu_s / SECONDS:.3f}", f"{peer.cpu_s / SECONDS:.3f}",
         f"{ours.cpu_s / peer.cpu_s:.2f}" if peer.cpu_s else "-"),
    ]  # fmt: skip
    for name, a, b, ratio in rows:
        print(f"{name:<28}{a:>18}{b:>20}{ratio:>8}")
    for side, run in refusals.items():
        print(f"wrong key, {side}: after {run.wall_s:.1f} s: {run.error or 'no error raised'}")
    assert ours.error == "", ours.error
    assert ours.received == ours.frames
    assert "wrong key" in refusals["ours"].error  # the server's own words reach the user


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(_serve())
    else:
        result = asyncio.run(_publish(sys.argv[2], sys.argv[3], float(sys.argv[4])))
        print(f"RESULT {json.dumps(result)}")
