"""Live thumbnails: one H.264 keyframe → a JPEG, decoded off the packaging path.

Only keyframes are decoded (an IDR needs no earlier frame, NOTES.md "Thumbnails from
keyframes only"), with the broadcast's AVCDecoderConfigurationRecord as extradata, so
the length-prefixed NAL units go in as they arrived. The work runs in one
:class:`ThumbnailRenderer` worker thread per ingest process: PyAV releases the GIL
while it decodes, and a stream asks at most once per interval and never while its
previous thumbnail is still being made, so a busy worker only skips thumbnails — it
never delays a part.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
from PIL import Image

# Big enough for a catalog card, small enough to fetch for a whole home page.
MAX_WIDTH = 640
JPEG_QUALITY = 80
# A keyframe this large is not a thumbnail's business (and bounds the decode's memory).
MAX_KEYFRAME_BYTES = 8 * 1024 * 1024


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


class ThumbnailRenderer:
    """One worker thread for every stream of this process (see the module docstring)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnail")

    async def render(self, avcc: bytes, keyframe: bytes) -> Thumbnail:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, render_keyframe, avcc, keyframe)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
