"""Media for the browser tests, made with PyAV: a paced RTMP publisher and a clip to upload."""

from __future__ import annotations

import fractions
import random
import threading
import time
from pathlib import Path

import av

FPS = 30
SAMPLE_RATE = 44100


def _frame(
    index: int, width: int, height: int, noise: random.Random | None = None
) -> av.VideoFrame:
    """A moving gradient with a bright bar (each frame differs, so playback is visible);
    with ``noise``, random luma on top (x264 cannot compress it away)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma, chroma_u, chroma_v = frame.planes
    bar = (index * 6) % width
    row = bytearray((x + index * 4) % 256 for x in range(luma.line_size))
    row[bar : bar + 12] = b"\xff" * len(row[bar : bar + 12])
    data = bytes(row) * height
    if noise is not None:
        data = bytes(a ^ (b & 0x3F) for a, b in zip(data, noise.randbytes(len(data)), strict=True))
    luma.update(data)
    chroma_u.update(bytes([(index * 3) % 256]) * chroma_u.buffer_size)
    chroma_v.update(bytes([128]) * chroma_v.buffer_size)
    return frame


def _silence(pts: int) -> av.AudioFrame:
    """1024 stereo samples of silence starting at sample ``pts``."""
    chunk = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
    chunk.sample_rate = SAMPLE_RATE
    for plane in chunk.planes:
        plane.update(bytes(plane.buffer_size))
    chunk.pts = pts
    return chunk


class LivePublisher(threading.Thread):
    """H.264 + AAC over RTMP at real-time pace (1 s GOP), until :meth:`stop`."""

    def __init__(self, url: str, *, width: int = 320, height: int = 180) -> None:
        super().__init__(name="pyav-rtmp-publisher", daemon=True)
        self.url, self.width, self.height = url, width, height
        self._stop_event = threading.Event()
        self.frames = 0
        self.error: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self.join(15)

    def run(self) -> None:
        try:
            self._publish()
        except BaseException as exc:  # reported to the test thread
            self.error = exc

    def _publish(self) -> None:
        container = av.open(self.url, mode="w", format="flv")
        try:
            video = container.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
            video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
            video.codec_context.gop_size = FPS
            audio = container.add_stream("aac", rate=SAMPLE_RATE)
            audio.layout = "stereo"
            samples = 0
            started = time.monotonic()
            while not self._stop_event.is_set():
                index = self.frames
                frame = _frame(index, self.width, self.height)
                frame.pts = index
                frame.time_base = fractions.Fraction(1, FPS)
                container.mux(video.encode(frame))
                while samples * FPS < (index + 1) * SAMPLE_RATE:
                    container.mux(audio.encode(_silence(samples)))
                    samples += 1024
                self.frames += 1
                ahead = started + self.frames / FPS - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            container.mux(video.encode(None))
            container.mux(audio.encode(None))
        finally:
            container.close()


def make_clip(path: Path, *, seconds: float = 3.0, width: int = 640, height: int = 360) -> Path:
    """An MP4 (H.264 + AAC) of several MiB: noise keeps x264 from compressing it away, so
    the tus upload takes several 1 MiB PATCHes and can be cut in the middle."""
    noise = random.Random(7)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 16_000_000
        video.codec_context.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "stereo"
        frames = int(seconds * FPS)
        for index in range(frames):
            frame = _frame(index, width, height, noise)
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = 0
        while samples < seconds * SAMPLE_RATE:
            container.mux(audio.encode(_silence(samples)))
            samples += 1024
        container.mux(audio.encode(None))
    return path
