"""Test media made with PyAV, and the store settings the transcoder's tests share.

Other transcoder tests import :func:`make_clip`, :func:`store_settings` and the
``media_store`` fixture from here; the tests below check the clips themselves, so a
broken generator fails here and not as a puzzling transcoder failure.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av
import msgspec
import pytest
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

from common.settings import Settings
from common.store import ObjectStore
from common.store.local import LocalStore
from common.store.s3 import S3Store
from tests.fixtures.minio import MinioServer

pytestmark = pytest.mark.integration

SAMPLE_RATE = 48000


def _picture(width: int, height: int, index: int) -> VideoFrame:
    """Moving bars (so the encoder has work and frames differ) with a per-frame tint."""
    frame = VideoFrame(width, height, "yuv420p")
    luma = frame.planes[0]
    stride = luma.line_size
    rows = bytearray(luma.buffer_size)
    for row in range(height):
        value = 16 + (row * 3 + index * 7) % 220
        start = row * stride
        rows[start : start + width] = bytes([value]) * width
        # A bright block that moves one step per frame.
        block = (index * 6) % max(1, width - 16)
        rows[start + block : start + block + 16] = b"\xeb" * 16
    luma.update(bytes(rows))
    frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
    frame.planes[2].update(bytes([(96 + index * 5) % 256]) * frame.planes[2].buffer_size)
    return frame


def _tone(start: int, samples: int) -> AudioFrame:
    pcm = b"".join(
        struct.pack("<hh", value, value)
        for value in (
            int(6000 * math.sin(2 * math.pi * 440 * (start + k) / SAMPLE_RATE))
            for k in range(samples)
        )
    )
    frame = AudioFrame(format="s16", layout="stereo", samples=samples)
    frame.planes[0].update(pcm)
    frame.sample_rate = SAMPLE_RATE
    frame.pts = start
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


def make_clip(
    path: Path,
    *,
    width: int = 640,
    height: int = 360,
    seconds: float = 3.0,
    fps: int = 30,
    audio: bool = True,
    gop: int = 15,
) -> Path:
    """An H.264 (+AAC) MP4 of ``seconds`` at ``width`` x ``height``, keyframes every ``gop``."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = gop
        video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo") if audio else None
        for index in range(round(seconds * fps)):
            frame = _picture(width, height, index)
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            for start in range(0, round(seconds * SAMPLE_RATE), 1024):
                out.mux(sound.encode(_tone(start, 1024)))
            out.mux(sound.encode(None))
    return path


def store_settings(settings: Settings, store: ObjectStore, minio: MinioServer | None) -> Settings:
    """``settings`` pointed at ``store`` (what the transcoder's child process opens)."""
    if isinstance(store, LocalStore):
        return msgspec.structs.replace(settings, store_backend="local", store_path=store.root)
    assert isinstance(store, S3Store)
    assert minio is not None
    return msgspec.structs.replace(
        settings,
        store_backend="s3",
        s3_endpoint=minio.endpoint,
        s3_access_key=minio.access_key,
        s3_secret_key=minio.secret_key,
        s3_bucket=store.bucket,
        s3_region=minio.region,
    )


@pytest.fixture(params=["local", "s3"])
def media_store(request: pytest.FixtureRequest) -> ObjectStore:
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store


def test_make_clip_writes_what_it_says(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "clip.mp4", width=320, height=180, seconds=2.0)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 320, 180)
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = list(container.decode(video))
    assert len(frames) == 60
    assert sum(frame.key_frame for frame in frames) == 4  # every 15 frames


def test_make_clip_without_audio(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "silent.mp4", width=160, height=90, seconds=1.0, audio=False)
    with av.open(str(path)) as container:
        assert not container.streams.audio
        assert container.streams.video[0].frames == 30
