"""The picture sizes an MP4/MOV *declares* in its header, read before FFmpeg opens it.

FFmpeg reports the size it finds in the codec's own headers (the H.264 SPS), so a file
whose ``tkhd``/``stsd`` claim 50000x50000 looks harmless in a PyAV probe — and then
every tool that trusts the container (players, thumbnailers, our own transcoder's
scaler set-up) allocates for the claim. RELIABILITY.md: "reject huge declared
dimensions from the header before decoding". This walks the box tree (ISO/IEC 14496-12
§4.2 box header, §8.3.2 TrackHeaderBox, §8.5.2 VisualSampleEntry) and returns every
declared video size, reading only box headers and the few boxes it needs.

Bounded on purpose: at most ``MAX_BOXES`` boxes, nesting ``MAX_DEPTH``, a ``moov`` of at
most ``MAX_MOOV_BYTES``; a box header that runs past its parent is :class:`BoxError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

__all__ = ["MAX_MOOV_BYTES", "BoxError", "declared_dimensions"]

ReadAt = Callable[[int, int], bytes]  # (offset, size) → at most size bytes

MAX_BOXES: Final = 100_000
MAX_DEPTH: Final = 12
MAX_MOOV_BYTES: Final = 64 * 1024 * 1024
_CONTAINERS: Final = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
_VISUAL_HANDLER: Final = b"vide"


class BoxError(ValueError):
    """The box structure is broken (truncated, overlapping, absurd sizes)."""


class _Walk:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.boxes = 0
        self.sizes: list[tuple[int, int]] = []
        self.handler = b""

    def children(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise BoxError("boxes nested too deep")
        offset = start
        while offset + 8 <= end:
            self.boxes += 1
            if self.boxes > MAX_BOXES:
                raise BoxError("too many boxes")
            size, kind = struct.unpack_from(">I4s", self.data, offset)
            header = 8
            if size == 1:
                if offset + 16 > end:
                    raise BoxError("truncated 64-bit box size")
                (size,) = struct.unpack_from(">Q", self.data, offset + 8)
                header = 16
            elif size == 0:
                size = end - offset
            if size < header or offset + size > end:
                raise BoxError(f"box {kind!r} at {offset} overruns its parent")
            self.box(kind, offset + header, offset + size, depth)
            offset += size

    def box(self, kind: bytes, body: int, end: int, depth: int) -> None:
        if kind in _CONTAINERS:
            if kind == b"trak":
                self.handler = b""
            self.children(body, end, depth + 1)
        elif kind == b"tkhd":
            self.track_header(body, end)
        elif kind == b"hdlr" and end - body >= 12:
            self.handler = self.data[body + 8 : body + 12]
        elif kind == b"stsd" and self.handler == _VISUAL_HANDLER:
            self.sample_descriptions(body, end)

    def track_header(self, body: int, end: int) -> None:
        # §8.3.2: width and height are the last two 16.16 fixed-point fields.
        if end - body < 84:
            return
        width, height = struct.unpack_from(">II", self.data, end - 8)
        if width or height:
            self.sizes.append((width >> 16, height >> 16))

    def sample_descriptions(self, body: int, end: int) -> None:
        # §8.5.2: FullBox header, entry_count, then sample entries whose width and
        # height sit 24 bytes into the entry's body.
        if end - body < 8:
            raise BoxError("truncated stsd")
        (count,) = struct.unpack_from(">I", self.data, body + 4)
        offset = body + 8
        for _ in range(min(count, 64)):
            if offset + 8 > end:
                raise BoxError("truncated sample entry")
            (size,) = struct.unpack_from(">I", self.data, offset)
            if size < 8 or offset + size > end:
                raise BoxError("sample entry overruns stsd")
            if size >= 36:
                self.sizes.append(struct.unpack_from(">HH", self.data, offset + 32))
            offset += size


def _top_level_moov(read_at: ReadAt, file_size: int) -> tuple[int, int]:
    """(offset, size) of the ``moov`` box among the top-level boxes; (0, 0) if none."""
    offset = 0
    for _ in range(MAX_BOXES):
        if offset + 8 > file_size:
            return 0, 0
        head = read_at(offset, 16)
        if len(head) < 8:
            return 0, 0
        size, kind = struct.unpack_from(">I4s", head)
        if size == 1:
            if len(head) < 16:
                raise BoxError("truncated 64-bit box size")
            (size,) = struct.unpack_from(">Q", head, 8)
        elif size == 0:
            size = file_size - offset
        if size < 8:
            raise BoxError(f"box {kind!r} at {offset} has size {size}")
        if kind == b"moov":
            return offset, min(size, file_size - offset)
        offset += size
    raise BoxError("too many top-level boxes")


def declared_dimensions(read_at: ReadAt, file_size: int) -> list[tuple[int, int]]:
    """Every (width, height) the file's tracks declare; [] when there is no moov."""
    offset, size = _top_level_moov(read_at, file_size)
    if size == 0:
        return []
    if size > MAX_MOOV_BYTES:
        raise BoxError(f"moov is {size} bytes; the limit is {MAX_MOOV_BYTES}")
    data = read_at(offset, size)
    if len(data) < size:
        raise BoxError("moov is truncated")
    walk = _Walk(data)
    walk.children(0, size, 0)
    return walk.sizes
