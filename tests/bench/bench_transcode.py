"""Ladder wall time: our transcoder against the ffmpeg CLI, same clip, same run.

    .venv/bin/pytest -m bench tests/bench/bench_transcode.py -s

The clip: 10 s of 1280x720 at 30 fps (ffmpeg's testsrc2 + a tone, H.264/AAC). Both
sides decode it once and encode 720p/480p/360p with libx264 at the configured preset
(veryfast), CRF 23 capped at each rung's maxrate/bufsize, an IDR frame every 2 s and no
scene cuts, AAC 128 kbit/s, into fMP4 HLS with 6 s segments.

- ours: one real job child (``python -m transcoder.child``, as the worker runs it):
  probe, the ladder with poster and thumbnails beside it, the sprite and VTT, every
  file written (and fsynced) into a folder store, the master playlist from measured
  bitrates; the child's ``job stages`` log line says where its wall time went;
- peer: ``ffmpeg -filter_complex split=3,scale`` with three HLS outputs written to a
  folder (it encodes the audio three times; we encode it once).

Rounds alternate who goes first; the medians and their ratio (ours / ffmpeg) are
printed. ``VIDEOPICK_TEST_BENCH_ROUNDS`` sets the rounds (default 3);
``VIDEOPICK_TEST_BENCH_1080P=1`` adds the issue's 30 s 1080p30 → 1080/720/480/360 case.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from common.settings import Settings, load_settings
from common.store.local import LocalStore
from transcoder.job import CRF
from transcoder.ladder import parse_ladder, select_rungs
from transcoder.protocol import JobSpec, Progress
from transcoder.supervise import run_child

pytestmark = pytest.mark.bench

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
ROUNDS = int(os.environ.get("VIDEOPICK_TEST_BENCH_ROUNDS", "3"))
KEYFRAME_S = 2.0
SEGMENT_S = 6.0
AUDIO_KBPS = 128


@dataclass(frozen=True)
class Case:
    name: str
    width: int
    height: int
    seconds: int
    ladder: tuple[str, ...]


CASES = [Case("720p-10s", 1280, 720, 10, ("720p:2800", "480p:1400", "360p:800"))]
if os.environ.get("VIDEOPICK_TEST_BENCH_1080P") == "1":
    CASES.append(
        Case(
            "1080p-30s",
            1920,
            1080,
            30,
            ("1080p:5000", "720p:2800", "480p:1400", "360p:800"),
        )
    )


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _make_clip(path: Path, case: Case) -> Path:
    subprocess.run(
        [
            FFMPEG, "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={case.width}x{case.height}:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(case.seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "60",
            "-c:a", "aac", "-b:a", "160k", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def _ffmpeg_command(clip: Path, case: Case, out: Path, preset: str) -> list[str]:
    rungs = select_rungs(case.width, case.height, parse_ladder(case.ladder))
    labels = [f"v{index}" for index in range(len(rungs))]
    graph = f"[0:v]split={len(rungs)}" + "".join(f"[s{i}]" for i in range(len(rungs))) + ";"
    graph += ";".join(
        f"[s{i}]scale={rung.width}:{rung.height}[{labels[i]}]" for i, rung in enumerate(rungs)
    )
    command = [FFMPEG, "-v", "error", "-y", "-i", str(clip), "-filter_complex", graph]
    for label, rung in zip(labels, rungs, strict=True):
        folder = out / rung.name
        folder.mkdir(parents=True)
        command += [
            "-map", f"[{label}]", "-map", "0:a",
            "-c:v", "libx264", "-preset", preset, "-crf", str(CRF),
            "-maxrate", f"{rung.maxrate_kbps}k", "-bufsize", f"{rung.bufsize_kbps}k",
            "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_S:g})",
            "-g", str(int(60 * KEYFRAME_S)), "-sc_threshold", "0",
            "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k",
            "-f", "hls", "-hls_time", f"{SEGMENT_S:g}", "-hls_playlist_type", "vod",
            "-hls_segment_type", "fmp4",
            "-hls_segment_filename", str(folder / "seg_%05d.m4s"),
            str(folder / "index.m3u8"),
        ]  # fmt: skip
    return command


def _run_ffmpeg(clip: Path, case: Case, out: Path, preset: str) -> Sample:
    shutil.rmtree(out, ignore_errors=True)
    command = _ffmpeg_command(clip, case, out, preset)
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return Sample(time.perf_counter() - started, _children_cpu() - cpu)


async def _run_ours(settings: Settings, store: LocalStore, video_id: str) -> Sample:
    await store.delete_prefix(f"vod/{video_id}/")

    async def ignore(_progress: Progress) -> None:
        return None

    spec = JobSpec(video_id=video_id, source_key="bench/source.mp4", settings=settings)
    cpu = _children_cpu()
    started = time.perf_counter()
    result = await run_child(spec, on_progress=ignore, stall_timeout_s=600)
    sample = Sample(time.perf_counter() - started, _children_cpu() - cpu)
    assert len(result.renditions) >= 3
    return sample


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_ladder_against_the_ffmpeg_cli(case: Case, tmp_path: Path) -> None:
    clip = _make_clip(tmp_path / "clip.mp4", case)
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    await store.put("bench/source.mp4", clip.read_bytes(), content_type="video/mp4")
    settings = msgspec.structs.replace(
        load_settings({}),
        store_backend="local",
        store_path=store.root,
        transcode_ladder=case.ladder,
        transcode_keyframe_s=KEYFRAME_S,
        transcode_segment_s=SEGMENT_S,
        transcode_audio_kbps=AUDIO_KBPS,
    )
    ours: list[Sample] = []
    peer: list[Sample] = []
    for round_ in range(ROUNDS):
        if round_ % 2 == 0:
            ours.append(await _run_ours(settings, store, "bench"))
            peer.append(await asyncio.to_thread(
                _run_ffmpeg, clip, case, tmp_path / "ffmpeg", settings.transcode_preset
            ))  # fmt: skip
        else:
            peer.append(await asyncio.to_thread(
                _run_ffmpeg, clip, case, tmp_path / "ffmpeg", settings.transcode_preset
            ))  # fmt: skip
            ours.append(await _run_ours(settings, store, "bench"))
    await store.close()

    ours_wall = statistics.median(s.wall_s for s in ours)
    peer_wall = statistics.median(s.wall_s for s in peer)
    ours_cpu = statistics.median(s.cpu_s for s in ours)
    peer_cpu = statistics.median(s.cpu_s for s in peer)
    ratio = ours_wall / peer_wall
    print(
        f"\n[bench transcode {case.name}, {ROUNDS} rounds, preset {settings.transcode_preset}, "
        f"ladder {','.join(case.ladder)}]\n"
        f"  videopick  wall {ours_wall:6.2f} s  cpu {ours_cpu:6.2f} s  "
        f"(runs: {', '.join(f'{s.wall_s:.2f}' for s in ours)})\n"
        f"  ffmpeg     wall {peer_wall:6.2f} s  cpu {peer_cpu:6.2f} s  "
        f"(runs: {', '.join(f'{s.wall_s:.2f}' for s in peer)})\n"
        f"  ratio (videopick / ffmpeg wall) {ratio:.3f}   realtime x{case.seconds / ours_wall:.2f}"
    )
    # Noise on a shared 2-core box is large; this only catches a broken pipeline.
    assert ratio < 2.0
