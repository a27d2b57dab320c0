"""Live thumbnails: one H.264 keyframe → a JPEG, decoded off the packaging path.

Only keyframes are decoded (an IDR needs no earlier frame, NOTES.md "Thumbnails from
keyframes only"), with the broadcast's AVCDecoderConfigurationRecord as extradata, so
the length-prefixed NAL units go in as they arrived. The work runs in one
:class:`ThumbnailRenderer` child process per ingest process, fed the keyframe's bytes
and the codec configuration, returning the JPEG. A worker thread was not enough: PyAV
holds the GIL for parts of a 1080p decode and the RGB/JPEG steps, and at 50 streams
that stalled every part ~1 s every 10 s (issue #4). The child also runs at a lower
CPU priority, and a decoder crash on a hostile keyframe only costs a thumbnail
(RELIABILITY.md "decode in a subprocess"). A stream asks at most once per interval
and never while its previous thumbnail is still being made, so a busy worker only
skips thumbnails — it never delays a part. At most one decode is in flight per
process (:attr:`ThumbnailRenderer.busy`): a stream whose keyframe finds it busy tries
its next keyframe, so streams stagger themselves instead of queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import av
from PIL import Image

# Big enough for a catalog card, small enough to fetch for a whole home page.
MAX_WIDTH = 640
JPEG_QUALITY = 80
# A keyframe this large is not a thumbnail's business (and bounds the decode's memory).
MAX_KEYFRAME_BYTES = 8 * 1024 * 1024
# A 1080p keyframe decodes in tens of milliseconds; a decode this slow is stuck (the
# bound also covers spawning the child, seconds on a loaded host).
RENDER_TIMEOUT_S = 30.0
# Thumbnails are background work: the child yields the core to the ingest's parts.
CHILD_NICENESS = 10


class ThumbnailError(Exception):
    """The keyframe did not decode to a picture."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    jpeg: bytes
    width: int
    height: int


def render_keyframe(avcc: bytes, keyframe: bytes, max_width: int = MAX_WIDTH) -> Thumbnail:
    """Decode one AVCC keyframe (4/2/1-byte NAL lengths, per ``avcc``) to a JPEG."""
    if len(keyframe) > MAX_KEYFRAME_BYTES:
        raise ThumbnailError(f"keyframe of {len(keyframe)} bytes is too large for a thumbnail")
    codec = av.CodecContext.create("h264", "r")
    codec.extradata = avcc
    codec.thread_count = 1  # one picture: frame threads would only add start-up cost
    try:
        frames = list(codec.decode(av.Packet(keyframe)))
        frames += codec.decode(None)  # no B-frames to wait for: flush the one picture out
    except av.FFmpegError as exc:
        raise ThumbnailError(f"keyframe did not decode: {exc}") from exc
    if not frames:
        raise ThumbnailError("keyframe decoded to no picture")
    frame = frames[0]
    width, height = frame.width, frame.height
    if width > max_width:  # scale in swscale, before any RGB conversion of the full frame
        width, height = max_width, max(2, round(height * max_width / width / 2) * 2)
    rgb = frame.reformat(width=width, height=height, format="rgb24")
    image: Image.Image = rgb.to_image()  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
    return Thumbnail(out.getvalue(), image.width, image.height)


def _lower_priority() -> None:
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICENESS)


class ThumbnailRenderer:
    """One child process for every stream of this process (see the module docstring).

    The child is spawned (not forked: the ingest has threads and an event loop) on the
    first render; one that died is replaced on the next.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """A render is in flight: a new one would only wait in line."""
        return self._in_flight > 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        return self._pool

    async def render(self, avcc: bytes, keyframe: bytes) -> Thumbnail:
        if len(keyframe) > MAX_KEYFRAME_BYTES:  # not worth sending to the child
            raise ThumbnailError(f"keyframe of {len(keyframe)} bytes is too large for a thumbnail")
        loop = asyncio.get_running_loop()
        pool = self._executor()
        self._in_flight += 1
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(pool, render_keyframe, avcc, keyframe), RENDER_TIMEOUT_S
            )
        except (BrokenProcessPool, TimeoutError) as exc:
            self._discard(pool)
            raise ThumbnailError(f"thumbnail process failed: {type(exc).__name__}") from exc
        finally:
            self._in_flight -= 1

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        _kill_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """End a stuck child: shutdown() alone waits for its task to finish."""
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
