"""The ladder end to end, in-process: a real clip in the store → HLS, stills, sprite.

Runs :func:`transcoder.job.run_job` (the child process's work) on both store backends
and checks the output the way a player would see it.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
from pathlib import Path

import av
import msgspec
import pytest
from PIL import Image, ImageChops, ImageStat

from common.settings import Settings
from common.store import ObjectStore
from events.catalog import Rendition
from tests.fixtures.minio import MinioServer
from tests.integration.test_transcoder_media import make_clip, store_settings
from transcoder.errors import PoisonInputError
from transcoder.job import CRF, run_job
from transcoder.ladder import parse_ladder, select_rungs
from transcoder.playlists import measure_bandwidth, parse_media_playlist
from transcoder.protocol import JobSpec, Progress, Result

pytestmark = pytest.mark.integration

# The default ladder plus a 240p rung, so a 360p source yields two renditions and
# proves the larger rungs are skipped (never upscaled).
LADDER = ("1080p:5000", "720p:2800", "480p:1400", "360p:800", "240p:400")
SOURCE_KEY = "uploads/clip-1/source.mp4"
FPS = 30
SECONDS = 3.0
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
# x264 writes its whole configuration into the first frame (an SEI message).
_X264_OPTIONS = re.compile(rb"x264 - core \d+.*? - options: ([^\x00]+)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("clip")
    return make_clip(folder / "clip.mp4", width=640, height=360, seconds=SECONDS).read_bytes()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    backend: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture
def job_settings(
    settings: Settings, store: ObjectStore, request: pytest.FixtureRequest
) -> Settings:
    minio: MinioServer | None = None
    if request.node.callspec.params.get("store") == "s3":
        minio = request.getfixturevalue("minio_server")
    return msgspec.structs.replace(store_settings(settings, store, minio), transcode_ladder=LADDER)


async def _run(settings: Settings, video_id: str, source_key: str) -> tuple[Result, list[Progress]]:
    progress: list[Progress] = []
    spec = JobSpec(video_id=video_id, source_key=source_key, settings=settings)
    result = await asyncio.to_thread(run_job, spec, progress.append)
    return result, progress


def _stream_inf(master: str) -> list[tuple[dict[str, str], str]]:
    lines = master.splitlines()
    out: list[tuple[dict[str, str], str]] = []
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attributes = dict(_ATTRIBUTE.findall(line.split(":", 1)[1]))
            out.append(({k: v.strip('"') for k, v in attributes.items()}, lines[index + 1]))
    return out


async def _rendition_file(store: ObjectStore, prefix: str, tmp: Path) -> tuple[Path, list[float]]:
    """init + every segment of a rendition joined into one playable fMP4 file."""
    playlist = (await store.read(prefix + "index.m3u8")).decode()
    assert '#EXT-X-MAP:URI="init.mp4"' in playlist
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    segments = parse_media_playlist(playlist)
    data = await store.read(prefix + "init.mp4")
    for segment in segments:
        data += await store.read(prefix + segment.uri)
    path = tmp / (prefix.strip("/").replace("/", "_") + ".mp4")
    path.write_bytes(data)
    return path, [segment.duration_s for segment in segments]


def _decode(path: Path) -> tuple[int, tuple[int, int], list[float], int]:
    """(frames, size, keyframe times, audio frames)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = list(container.decode(video))
        times = [float(f.pts * f.time_base) for f in frames if f.pts is not None and f.time_base]
        assert len(times) == len(frames)
        keyframes = [
            round(time - times[0], 3) for time, f in zip(times, frames, strict=True) if f.key_frame
        ]
        size = (frames[0].width, frames[0].height)
    with av.open(str(path)) as container:
        audio_frames = sum(1 for _ in container.decode(audio=0)) if container.streams.audio else 0
    return len(frames), size, keyframes, audio_frames


async def test_ladder_output_plays_like_a_player_expects(
    store: ObjectStore, job_settings: Settings, clip: bytes, tmp_path: Path
) -> None:
    await store.put(SOURCE_KEY, clip, content_type="video/mp4")
    result, progress = await _run(job_settings, "clip-1", SOURCE_KEY)

    # Never upscaled: 1080p/720p/480p are skipped for a 360p source.
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("360p", 640, 360),
        ("240p", 426, 240),
    ]
    assert result.master_key == "vod/clip-1/master.m3u8"
    assert (result.width, result.height) == (640, 360)
    assert result.duration_s == pytest.approx(SECONDS, abs=0.05)

    master = (await store.read(result.master_key)).decode()
    assert master.splitlines()[:3] == ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    variants = _stream_inf(master)
    assert [uri for _, uri in variants] == ["360p/index.m3u8", "240p/index.m3u8"]

    keyframe_sets = []
    for (attributes, uri), rendition in zip(variants, result.renditions, strict=True):
        assert attributes["RESOLUTION"] == f"{rendition.width}x{rendition.height}"
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", attributes["CODECS"])
        assert attributes["FRAME-RATE"] == "30.000"
        bandwidth, average = int(attributes["BANDWIDTH"]), int(attributes["AVERAGE-BANDWIDTH"])
        assert 0 < average <= bandwidth
        assert (bandwidth, average) == (rendition.bandwidth, rendition.average_bandwidth)

        prefix = f"vod/clip-1/{uri.rsplit('/', 1)[0]}/"
        playlist = (await store.read(prefix + "index.m3u8")).decode()
        segments = parse_media_playlist(playlist)
        sizes = {s.uri: (await store.stat(prefix + s.uri)).size for s in segments}
        assert measure_bandwidth(segments, sizes) == (bandwidth, average)

        path, durations = await _rendition_file(store, prefix, tmp_path)
        assert sum(durations) == pytest.approx(SECONDS, abs=0.05)
        frames, size, keyframes, audio_frames = _decode(path)
        assert frames == round(SECONDS * FPS)
        assert size == (rendition.width, rendition.height)
        assert audio_frames > 100  # ~3 s of AAC at 1024 samples per frame
        keyframe_sets.append(keyframes)
    # Keyframes every 2 s, on the same frames in every rendition: ABR can switch.
    assert keyframe_sets[0] == [0.0, 2.0]
    assert all(keyframes == keyframe_sets[0] for keyframes in keyframe_sets)

    poster = Image.open(io.BytesIO(await store.read(result.poster_key)))
    assert (poster.format, poster.size) == ("JPEG", (640, 360))
    assert len(result.thumbnail_keys) == job_settings.transcode_thumbnails
    for key in result.thumbnail_keys:
        assert Image.open(io.BytesIO(await store.read(key))).size == (320, 180)

    sprite = Image.open(io.BytesIO(await store.read(result.sprite_key)))
    vtt = (await store.read(result.sprite_vtt_key)).decode()
    _check_vtt(vtt, sprite.size, SECONDS)

    stages = [p.stage for p in progress]
    assert stages[0] == "thumbnails"
    assert stages[-1] == "uploading"
    assert progress[-1].position_s == pytest.approx(SECONDS, abs=0.05)


def _check_vtt(vtt: str, sprite_size: tuple[int, int], duration: float) -> None:
    assert vtt.startswith("WEBVTT\n")
    cues = re.findall(
        r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n"
        r"sprite\.jpg#xywh=(\d+),(\d+),(\d+),(\d+)",
        vtt,
    )
    assert cues, vtt
    previous_end = 0.0
    for cue in cues:
        values = [int(v) for v in cue]
        start = values[0] * 3600 + values[1] * 60 + values[2] + values[3] / 1000
        end = values[4] * 3600 + values[5] * 60 + values[6] + values[7] / 1000
        x, y, w, h = values[8:]
        assert start == pytest.approx(previous_end)  # contiguous, from 0
        assert end > start
        previous_end = end
        assert x + w <= sprite_size[0]
        assert y + h <= sprite_size[1]
        assert (w, h) == (160, 90)
    assert previous_end == pytest.approx(duration, abs=0.05)


async def test_same_job_twice_writes_the_same_keys(
    store: ObjectStore, job_settings: Settings, clip: bytes
) -> None:
    await store.put(SOURCE_KEY, clip, content_type="video/mp4")
    first, _ = await _run(job_settings, "clip-2", SOURCE_KEY)
    keys_first = sorted([info.key async for info in store.list("vod/clip-2/")])
    second, _ = await _run(job_settings, "clip-2", SOURCE_KEY)
    keys_second = sorted([info.key async for info in store.list("vod/clip-2/")])
    assert keys_first == keys_second
    # The same result but for the measured bandwidths. In CI under load two encodes of
    # the same job differed twice, the second time in the renditions only (by how much
    # was cut from the message); libx264's frame threads with VBV are the suspect, not
    # proven. A redelivered job may differ the same way: same keys, same
    # GOP grid, both valid. The bandwidths must stay close.
    assert msgspec.structs.replace(first, renditions=[]) == msgspec.structs.replace(
        second, renditions=[]
    )
    assert [_without_bandwidth(r) for r in first.renditions] == [
        _without_bandwidth(r) for r in second.renditions
    ]
    for one, other in zip(first.renditions, second.renditions, strict=True):
        for measured in ("bandwidth", "average_bandwidth"):
            a, b = getattr(one, measured), getattr(other, measured)
            assert abs(a - b) <= 0.05 * max(a, b), (one.name, measured, a, b)


def _without_bandwidth(rendition: Rendition) -> Rendition:
    return msgspec.structs.replace(rendition, bandwidth=0, average_bandwidth=0)


@pytest.mark.parametrize("store", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("text.mp4", "not a supported video container"),
        ("empty.mp4", "not a supported video container"),
        ("truncated.mp4", "not a supported video container"),
        ("wide.mkv", "16384 px"),
        ("audio-only.mp4", "no video stream"),
    ],
)
async def test_poison_inputs_are_refused_with_a_reason(
    store: ObjectStore, job_settings: Settings, clip: bytes, tmp_path: Path, name: str, reason: str
) -> None:
    await store.put("uploads/bad/source", _poison(name, clip, tmp_path))
    with pytest.raises(PoisonInputError, match=reason):
        await _run(job_settings, "bad", "uploads/bad/source")
    assert [info.key async for info in store.list("vod/bad/master")] == []


async def test_a_missing_source_is_poison(store: ObjectStore, job_settings: Settings) -> None:
    with pytest.raises(PoisonInputError, match="does not exist"):
        await _run(job_settings, "gone", "uploads/gone/source.mp4")


def _poison(name: str, clip: bytes, tmp_path: Path) -> bytes:
    if name == "text.mp4":
        return b"this is a text file, renamed .mp4\n" * 100
    if name == "empty.mp4":
        return b""
    if name == "truncated.mp4":
        return clip[: len(clip) // 2]  # PyAV writes the moov at the end: it is cut off
    if name == "wide.mkv":
        return _declared_huge(tmp_path / name)
    if name == "audio-only.mp4":
        return _audio_only(tmp_path / name)
    raise AssertionError(name)


def _declared_huge(path: Path) -> bytes:
    """A tiny Matroska file whose MJPEG track declares 16400 px (refused from the header)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mjpeg", rate=30)
        video.width, video.height, video.pix_fmt = 16400, 16, "yuvj420p"
        frame = av.VideoFrame(16400, 16, "yuvj420p")
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts = 0
        out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path.read_bytes()


def _audio_only(path: Path) -> bytes:
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame(format="s16", layout="stereo", samples=1024)
        frame.planes[0].update(bytes(4096))
        frame.sample_rate = 48000
        frame.pts = 0
        out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path.read_bytes()


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_a_rotated_phone_clip_comes_out_upright(
    store: ObjectStore, job_settings: Settings, clip: bytes, tmp_path: Path
) -> None:
    """A landscape-coded clip with a 90° display matrix (a phone held upright) becomes
    a portrait ladder, turned the way ffmpeg's own autorotate turns it."""
    source = tmp_path / "source.mp4"
    source.write_bytes(clip)
    rotated = tmp_path / "rotated.mp4"
    await asyncio.to_thread(
        _ffmpeg, "-i", str(source), "-c", "copy", "-metadata:s:v", "rotate=90", str(rotated)
    )
    await store.put("uploads/rot/source.mp4", rotated.read_bytes())
    result, _ = await _run(job_settings, "rot", "uploads/rot/source.mp4")
    assert [(r.name, r.width, r.height) for r in result.renditions] == [
        ("360p", 360, 640),
        ("240p", 240, 426),
    ]
    poster = Image.open(io.BytesIO(await store.read(result.poster_key)))
    assert poster.size == (360, 640)

    path, _ = await _rendition_file(store, "vod/rot/360p/", tmp_path)
    reference = tmp_path / "reference.png"
    await asyncio.to_thread(
        _ffmpeg, "-i", str(rotated), "-frames:v", "1", "-s", "360x640", str(reference)
    )
    with av.open(str(path)) as container:
        ours = next(container.decode(video=0)).to_image().convert("L")  # type: ignore[no-untyped-call]
    theirs = Image.open(reference).convert("L")
    upright = ImageStat.Stat(ImageChops.difference(ours, theirs)).mean[0]
    turned = ImageStat.Stat(ImageChops.difference(ours, theirs.rotate(180))).mean[0]
    assert upright < 3 < turned


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize("store", ["local"], indirect=True)
async def test_x264_runs_as_the_ffmpeg_cli_runs_it(
    store: ObjectStore, job_settings: Settings, clip: bytes, tmp_path: Path
) -> None:
    """Option by option (threads included) the ladder bench's peer: the ffmpeg CLI
    with the same preset, CRF, VBV cap and GOP. PyAV's slice-thread default once gave
    sliced_threads=1 here, which left a core idle on the top rung."""
    await store.put(SOURCE_KEY, clip, content_type="video/mp4")
    await _run(job_settings, "x264", SOURCE_KEY)
    ours = _x264_options(await store.read("vod/x264/360p/seg_00000.m4s"))

    rung = select_rungs(640, 360, parse_ladder(LADDER))[0]
    source, reference = tmp_path / "source.mp4", tmp_path / "reference.mp4"
    source.write_bytes(clip)
    gop = round(FPS * job_settings.transcode_keyframe_s * 2)
    await asyncio.to_thread(
        _ffmpeg,
        "-i", str(source), "-map", "0:v", "-vf", f"scale={rung.width}:{rung.height}",
        "-c:v", "libx264", "-preset", job_settings.transcode_preset, "-crf", str(CRF),
        "-maxrate", f"{rung.maxrate_kbps}k", "-bufsize", f"{rung.bufsize_kbps}k",
        "-force_key_frames", f"expr:gte(t,n_forced*{job_settings.transcode_keyframe_s:g})",
        "-g", str(gop), "-sc_threshold", "0", str(reference),
    )  # fmt: skip
    theirs = _x264_options(reference.read_bytes())
    assert ours["sliced_threads"] == "0"
    assert ours == theirs


def _x264_options(data: bytes) -> dict[str, str]:
    match = _X264_OPTIONS.search(data)
    assert match is not None, "no x264 settings in the stream"
    pairs = (item.partition("=") for item in match.group(1).decode().split())
    return {key: value for key, _, value in pairs}
