"""The safety-netted probe on hostile and honest media (RELIABILITY.md, "Media").

Real files made with PyAV; the probe reads them from the folder store through its
child process, exactly as in production.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import struct
from pathlib import Path
from typing import Any, cast

import av
import msgspec
import pytest
from av.video.stream import VideoStream

from common.settings import Settings, load_settings
from common.store.local import LocalStore
from tests.integration.test_tus_fixtures import forge_dimensions, make_mp4, padded_mp4
from uploader.probe import child, runner
from uploader.probe.boxes import BoxError, declared_dimensions
from uploader.probe.sniff import sniff
from uploader.probe.verdict import Accepted, Code, Rejected, Verdict

pytestmark = pytest.mark.integration

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"


@pytest.fixture
def store(local_store: LocalStore) -> LocalStore:
    return local_store  # the folder store of tests/fixtures/minio.py


@pytest.fixture
def probe_settings(tmp_path: Path) -> Settings:
    return load_settings({"VIDEOPICK_DATA_DIR": str(tmp_path / "data")})


async def probe(
    store: LocalStore, data: bytes, settings: Settings, name: str = "upload.mp4"
) -> Verdict:
    await store.put(f"x/{name}", data)
    return await runner.probe_object(store, f"x/{name}", len(data), settings)


def encode(
    fmt: str,
    codec: str = "libx264",
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 10,
    audio_streams: int = 1,
    video: bool = True,
) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        stream: VideoStream | None = None
        if video:
            stream = cast(VideoStream, out.add_stream(codec, rate=10))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sounds = []
        for _ in range(audio_streams):
            sound = out.add_stream("aac", rate=8000)
            sound.layout = "mono"
            sounds.append(sound)
        for index in range(frames if stream else 0):
            assert stream is not None
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 20 % 256]) * plane.buffer_size)
            frame.pts, frame.time_base = index, fractions.Fraction(1, 10)
            out.mux(stream.encode(frame))
        if stream is not None:
            out.mux(stream.encode())
        for sound in sounds:
            pts = 0
            for _ in range(8):
                samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
                samples.planes[0].update(bytes(samples.planes[0].buffer_size))
                samples.sample_rate, samples.pts = 8000, pts
                pts += 1024
                out.mux(sound.encode(samples))
            out.mux(sound.encode())
    return buffer.getvalue()


# --- sniffing and declared sizes (pure) -------------------------------------------------


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x00\x00\x00\x20ftypisom" + b"\x00" * 20, "mp4"),
        (b"\x00\x00\x00\x14ftypqt  " + b"\x00" * 20, "mov"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm" + b"\x00" * 40, "webm"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01matroska" + b"\x00" * 40, "matroska"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "avi"),
        (b"FLV\x01\x05\x00\x00\x00\x09", "flv"),
        ((b"\x47" + b"\x00" * 187) * 3, "mpegts"),
    ],
)
def test_sniff_recognises_the_whitelist(head: bytes, name: str) -> None:
    container = sniff(head)
    assert container is not None
    assert container.name == name


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, I am text renamed to .mp4\n",
        PLAYLIST,
        b"ffconcat version 1.0\nfile /etc/passwd\n",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 32,
        b"PK\x03\x04" + b"\x00" * 32,
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"<?xml version='1.0'?><MPD/>",
    ],
)
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff(head) is None


def reader(data: bytes) -> Any:
    return lambda offset, size: data[offset : offset + size]


def test_declared_dimensions_of_a_real_file_and_of_a_forged_one() -> None:
    data = make_mp4()
    assert set(declared_dimensions(reader(data), len(data))) == {(64, 48)}
    forged = forge_dimensions(data, 20000, 20000)
    assert set(declared_dimensions(reader(forged), len(forged))) == {(20000, 20000)}


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I4s", 1000, b"moov") + b"\x00" * 20,  # moov runs past the file
        struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 64, b"trak"),  # child overruns
        struct.pack(">I4s", 4, b"ftyp"),  # a box smaller than its header
        struct.pack(">I4sQ", 1, b"moov", 2**62),  # 64-bit size beyond any limit
    ],
)
def test_broken_box_trees_are_errors_not_crashes(data: bytes) -> None:
    with pytest.raises(BoxError):
        declared_dimensions(reader(data), len(data))


def test_box_nesting_is_bounded() -> None:
    inner = b""
    for _ in range(40):
        inner = struct.pack(">I4s", 8 + len(inner), b"trak") + inner
    data = struct.pack(">I4s", 8 + len(inner), b"moov") + inner
    with pytest.raises(BoxError, match="deep"):
        declared_dimensions(reader(data), len(data))


# --- the probe -------------------------------------------------------------------------


async def test_a_real_mp4_is_described(store: LocalStore, probe_settings: Settings) -> None:
    verdict = await probe(store, make_mp4(), probe_settings)
    assert verdict == Accepted(
        container="mp4",
        duration_s=verdict.duration_s if isinstance(verdict, Accepted) else 0,
        width=64,
        height=48,
        video_codec="h264",
        audio_codec="aac",
        fps=10.0,
        bit_rate=verdict.bit_rate if isinstance(verdict, Accepted) else 0,
    )
    assert isinstance(verdict, Accepted)
    assert 0.9 <= verdict.duration_s <= 1.2


@pytest.mark.parametrize(
    ("fmt", "codec", "container"),
    [
        ("matroska", "libx264", "matroska"),
        ("webm", "libvpx-vp9", "webm"),
        ("mpegts", "libx264", "mpegts"),
    ],
)
async def test_other_containers_are_accepted(
    store: LocalStore, probe_settings: Settings, fmt: str, codec: str, container: str
) -> None:
    data = encode(fmt, codec, audio_streams=0 if fmt == "webm" else 1)
    verdict = await probe(store, data, probe_settings, f"clip.{fmt}")
    assert isinstance(verdict, Accepted), verdict
    assert verdict.container == container


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", Code.EMPTY),
        (b"this is text renamed to video.mp4\n" * 50, Code.NOT_MEDIA),
        (PLAYLIST, Code.NOT_MEDIA),
        (make_mp4()[:2000], Code.CORRUPT),  # truncated inside the moov
        (forge_dimensions(make_mp4(), 20000, 20000), Code.TOO_LARGE_DIMENSIONS),
        (forge_dimensions(make_mp4(), 50000, 50000), Code.TOO_LARGE_DIMENSIONS),
        (forge_dimensions(make_mp4(), 16384, 480), Code.TOO_LARGE_DIMENSIONS),
    ],
    ids=["empty", "text", "hls-playlist", "truncated-moov", "20000px", "50000px", "16384px"],
)
async def test_hostile_or_broken_files_are_rejected(
    store: LocalStore, probe_settings: Settings, data: bytes, code: Code
) -> None:
    verdict = await probe(store, data, probe_settings)
    assert isinstance(verdict, Rejected), verdict
    assert verdict.code == code
    assert verdict.reason  # a sentence for the user


async def test_no_video_and_too_many_streams(store: LocalStore, probe_settings: Settings) -> None:
    audio_only = encode("mp4", video=False)
    verdict = await probe(store, audio_only, probe_settings)
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.NO_VIDEO
    crowded = encode("matroska", audio_streams=child.MAX_STREAMS)
    verdict = await probe(store, crowded, probe_settings, "crowded.mkv")
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.TOO_MANY_STREAMS


async def test_a_video_longer_than_allowed(store: LocalStore, probe_settings: Settings) -> None:
    short_limit = msgspec.structs.replace(probe_settings, probe_max_duration_s=0.5)
    verdict = await probe(store, make_mp4(seconds=1.0), short_limit)
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.TOO_LONG


async def test_corrupt_pictures_are_rejected(store: LocalStore, probe_settings: Settings) -> None:
    data = bytearray(make_mp4())
    mdat = data.find(b"mdat")
    data[mdat + 4 : mdat + 4 + 3000] = b"\xff" * 3000  # the packets, not the index
    verdict = await probe(store, bytes(data), probe_settings)
    assert isinstance(verdict, Rejected)
    assert verdict.code in (Code.CORRUPT, Code.NOT_MEDIA)


async def test_the_child_is_killed_at_its_deadline(
    store: LocalStore, probe_settings: Settings
) -> None:
    impatient = msgspec.structs.replace(probe_settings, probe_timeout_s=0.01)
    verdict = await probe(store, make_mp4(), impatient)
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.UNREADABLE


async def test_the_child_has_a_memory_ceiling(store: LocalStore, probe_settings: Settings) -> None:
    # 40 MiB of address space is not even enough to load FFmpeg: the child dies, the
    # parent reports the file as unreadable instead of crashing or hanging.
    starved = msgspec.structs.replace(probe_settings, probe_memory_mb=40)
    verdict = await probe(store, make_mp4(), starved)
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.UNREADABLE


async def test_a_playlist_never_reaches_ffmpeg(
    store: LocalStore, probe_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned: list[Any] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        spawned.append(args)
        raise AssertionError("the probe child must not run for a playlist")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    verdict = await probe(store, PLAYLIST, probe_settings, "evil.m3u8")
    assert isinstance(verdict, Rejected)
    assert verdict.code == Code.NOT_MEDIA
    assert spawned == []


def test_even_a_forced_hls_demuxer_opens_nothing(tmp_path: Path) -> None:
    """Defence in depth, should sniffing ever be bypassed: the child's FFmpeg settings
    refuse every nested open (HLS segments, file:, concat:, AVI's GAB2 playlists)."""
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"\x47" * 188 * 3)
    playlist = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
        f"file://{secret}\n#EXTINF:10,\nconcat:{secret}|{secret}\n#EXT-X-ENDLIST\n"
    ).encode()

    class Channel:
        def read_at(self, offset: int, size: int) -> bytes:
            return playlist[offset : offset + size]

    opened: list[str] = []
    refuse = child._refuse_open

    def spy(url: str, flags: int, options: dict[str, Any]) -> Any:
        opened.append(url)
        return refuse(url, flags, options)

    original = child._refuse_open
    child._refuse_open = spy
    try:
        for whitelist in ("hls", "mov,mp4,m4a,3gp,3g2,mj2"):
            file = child.RemoteFile(Channel(), len(playlist))  # type: ignore[arg-type]
            verdict = child._open_and_decode(file, "hls", "hls", whitelist, 100.0)
            assert isinstance(verdict, Rejected)
    finally:
        child._refuse_open = original
    # The one open FFmpeg attempted went to our refusing callback, never to a file.
    assert all(url.startswith("file://") for url in opened)


def test_the_child_gets_no_secrets() -> None:
    env = runner._child_env()
    assert not [name for name in env if name.startswith("VIDEOPICK_")]
    assert set(env) == {"PATH", "PYTHONPATH", "LANG", "PYTHONDONTWRITEBYTECODE"}


async def test_a_padded_file_is_fine(store: LocalStore, probe_settings: Settings) -> None:
    verdict = await probe(store, padded_mp4(3 * 1024 * 1024), probe_settings)
    assert isinstance(verdict, Accepted)
