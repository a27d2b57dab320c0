"""ISO BMFF boxes: writing them, and splitting a byte stream back into them.

ISO/IEC 14496-12 §4.2: a box is a 32-bit size (header included), a four-character
type, then the payload; size 1 means a 64-bit size follows the type, size 0 means
"to the end of the file". A full box adds an 8-bit version and 24-bit flags.

:class:`BoxSplitter` is the sans-IO reader: feed bytes in any chunking, take whole
boxes out. The tests use it on our own output; the PyAV muxer variant in the benchmark
uses it to cut ffmpeg's CMAF output into init and parts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ingest.packager.errors import PackagerError

_HEADER = struct.Struct(">I4s")
_LARGE = struct.Struct(">Q")
# A box bigger than this is not one we produce or accept (a part is a few hundred KB).
MAX_BOX_SIZE = 256 * 1024 * 1024


class BoxError(PackagerError):
    """Bytes that do not parse as ISO BMFF boxes."""


def box(kind: bytes, *payload: bytes) -> bytes:
    size = _HEADER.size + sum(len(part) for part in payload)
    return b"".join((_HEADER.pack(size, kind), *payload))


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


@dataclass(frozen=True, slots=True)
class Box:
    kind: str
    data: bytes  # the whole box, header included

    @property
    def payload(self) -> bytes:
        size = _HEADER.unpack_from(self.data)[0]
        return self.data[16:] if size == 1 else self.data[8:]


class BoxSplitter:
    """Feed bytes, get whole top-level boxes back (any chunking)."""

    def __init__(self, max_box_size: int = MAX_BOX_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_box_size

    @property
    def pending(self) -> int:
        """Bytes held for a box not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Box]:
        self._buffer += data
        boxes: list[Box] = []
        while True:
            size = self._next_size()
            if size is None or len(self._buffer) < size:
                return boxes
            chunk = bytes(self._buffer[:size])
            del self._buffer[:size]
            boxes.append(Box(chunk[4:8].decode("latin-1"), chunk))

    def _next_size(self) -> int | None:
        if len(self._buffer) < _HEADER.size:
            return None
        size, kind = _HEADER.unpack_from(self._buffer)
        header = _HEADER.size
        if size == 1:
            if len(self._buffer) < header + _LARGE.size:
                return None
            size = _LARGE.unpack_from(self._buffer, header)[0]
            header += _LARGE.size
        elif size == 0:
            raise BoxError(f"box {kind!r} runs to the end of the stream; a live stream has none")
        if size < header:
            raise BoxError(f"box {kind!r} declares {size} bytes, less than its header")
        if size > self._max:
            raise BoxError(f"box {kind!r} declares {size} bytes, over the {self._max} limit")
        return int(size)


def iter_boxes(data: bytes) -> Iterator[Box]:
    """The top-level boxes of a complete buffer; trailing garbage raises :class:`BoxError`."""
    splitter = BoxSplitter()
    yield from splitter.feed(data)
    if splitter.pending:
        raise BoxError(f"{splitter.pending} bytes after the last whole box")


def child_boxes(parent: Box) -> list[Box]:
    """The boxes inside a container box (moov, trak, moof, traf …)."""
    return list(iter_boxes(parent.payload))
