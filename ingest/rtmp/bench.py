"""CPU per RTMP publisher: ``python -m ingest.rtmp.bench [--seconds 10] [--mbps 6] [--streams 1]``.

Encodes a test clip once (x264, constant bitrate), then streams it with
``ffmpeg -re -c copy`` (so the publisher costs almost nothing) into an ingest server
running in a child process with the real RTMP core, key check and session, and a
sink that drops the media. The child's CPU time comes from ``/proc/<pid>/stat``
(utime + stime) across the publish; reported as % of one core per publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import subprocess
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from common.db import create_engine, migrate, session_factory
from common.logs import configure_logging
from events.catalog import ChannelKeyRotated
from ingest.auth import hash_key
from ingest.keys import KeyStore, PublisherLeases
from ingest.media import null_sink_factory
from ingest.server import IngestConfig, IngestServer

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def make_clip(
    path: Path, seconds: float, mbps: float, *, size: str = "1280x720", gop: int = 60
) -> None:
    """A constant-bitrate x264/AAC FLV of a test picture (30 fps, a keyframe every ``gop``)."""
    rate = f"{mbps}M"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop),
         "-keyint_min", str(gop), "-sc_threshold", "0",
         "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", rate,
         "-x264-params", "nal-hrd=cbr:filler=1", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)],
        check=True,
    )  # fmt: skip


def publisher_args(clip: Path, port: int, key: str) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip),
        "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{key}",
    ]  # fmt: skip


def serve(port: int, database: str, keys: list[str], ready: Event) -> None:
    configure_logging("ingest", "ERROR", False)  # per-connection lines are noise here

    async def main() -> None:
        await migrate(database)
        engine = create_engine(database)
        sessions = session_factory(engine)
        store = KeyStore(sessions)
        for index, key in enumerate(keys):
            await store.apply_rotation(
                ChannelKeyRotated(stream_id=f"bench{index}", user_id="u", key_hash=hash_key(key))
            )
        server = IngestServer(
            IngestConfig(port=port, stats_interval_s=5.0),
            keys=store,
            leases=PublisherLeases(sessions, instance="bench"),
            sink_factory=null_sink_factory,
        )
        await server.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest.rtmp.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mbps", type=float, default=6.0)
    parser.add_argument("--streams", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vp-rtmp-bench-") as folder:
        clip = Path(folder) / "clip.flv"
        make_clip(clip, args.seconds, args.mbps)
        clip_mbps = clip.stat().st_size * 8 / args.seconds / 1e6
        keys = [secrets.token_urlsafe(32) for _ in range(args.streams)]
        port = 19350 + os.getpid() % 1000
        ready = multiprocessing.get_context("spawn").Event()
        child = multiprocessing.get_context("spawn").Process(
            target=serve, args=(port, f"sqlite+aiosqlite:///{folder}/bench.db", keys, ready)
        )
        child.start()
        try:
            if not ready.wait(60):
                raise SystemExit("the ingest server did not start")
            assert child.pid is not None
            before, started = cpu_seconds(child.pid), time.monotonic()
            publishers = [subprocess.Popen(publisher_args(clip, port, key)) for key in keys]
            codes = [p.wait() for p in publishers]
            elapsed = time.monotonic() - started
            used = cpu_seconds(child.pid) - before
        finally:
            child.terminate()
            child.join()
    print(
        f"{args.streams} publisher(s) x {clip_mbps:.2f} Mbit/s for {elapsed:.1f} s: "
        f"ingest used {used:.2f} CPU-s = {100 * used / elapsed:.1f} % of a core "
        f"({100 * used / elapsed / args.streams:.2f} % per publisher); ffmpeg exit codes {codes}"
    )


if __name__ == "__main__":
    main()
