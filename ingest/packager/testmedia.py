"""Short H.264/AAC FLV files made by the ffmpeg CLI, for the packager's tests and benchmark.

Not used on the live path. The files are what an ffmpeg or OBS publisher sends over
RTMP (the same FLV tags), so replaying them (``flvfile.replay``) exercises the packager
exactly as the RTMP server does, minus the network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def make_flv(
    path: Path,
    *,
    seconds: float = 4.0,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    gop: int = 30,
    bframes: int = 2,
    video: bool = True,
    audio: bool = True,
    sample_rate: int = 48000,
    video_kbps: int | None = None,
    preset: str = "veryfast",
) -> Path:
    """Encode a test pattern (and a tone) into ``path``; returns it."""
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={sample_rate}"]
    args += ["-t", str(seconds)]
    if video:
        args += ["-c:v", "libx264", "-preset", preset, "-pix_fmt", "yuv420p"]
        args += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
        args += ["-bf", str(bframes)]
        if video_kbps:
            rate = f"{video_kbps}k"
            args += ["-b:v", rate, "-maxrate", rate, "-bufsize", f"{video_kbps * 2}k"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k", "-ac", "2"]
    args += ["-f", "flv", str(path)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    return path
