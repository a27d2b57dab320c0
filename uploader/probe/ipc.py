"""The pipe protocol between the probe's child (FFmpeg side) and its parent (store side).

The child has no store credentials and no network: every byte it reads, it asks the
parent for, over its stdout, and gets back on its stdin. So the parent decides how
much of the upload the probe may read (a budget), and a hostile file cannot make the
probe open anything else.

    child → parent   b"R" offset:u64 length:u32      read request
                     b"J" length:u32 json            the verdict (last frame)
    parent → child   length:u32 bytes                the bytes (fewer at the end)
"""

from __future__ import annotations

import struct
from typing import BinaryIO, Final

__all__ = [
    "MAX_READ",
    "READ",
    "RESULT",
    "ChildChannel",
    "pack_data",
    "pack_request",
    "pack_result",
]

READ: Final = b"R"
RESULT: Final = b"J"
MAX_READ: Final = 4 * 1024 * 1024  # one answer's size bound
_REQUEST: Final = struct.Struct(">QI")
_LENGTH: Final = struct.Struct(">I")
MAX_RESULT: Final = 64 * 1024


def pack_request(offset: int, length: int) -> bytes:
    return READ + _REQUEST.pack(offset, length)


def pack_result(payload: bytes) -> bytes:
    return RESULT + _LENGTH.pack(len(payload)) + payload


def pack_data(data: bytes) -> bytes:
    return _LENGTH.pack(len(data)) + data


def unpack_request(body: bytes) -> tuple[int, int]:
    offset, length = _REQUEST.unpack(body)
    return int(offset), int(length)


def unpack_length(body: bytes) -> int:
    (length,) = _LENGTH.unpack(body)
    return int(length)


REQUEST_SIZE: Final = _REQUEST.size
LENGTH_SIZE: Final = _LENGTH.size


class ChildChannel:
    """The child's end: blocking reads through the parent."""

    def __init__(self, to_parent: BinaryIO, from_parent: BinaryIO) -> None:
        self._out = to_parent
        self._in = from_parent

    def read_at(self, offset: int, length: int) -> bytes:
        chunks: list[bytes] = []
        while length > 0:
            want = min(length, MAX_READ)
            self._out.write(pack_request(offset, want))
            self._out.flush()
            size = unpack_length(self._exactly(LENGTH_SIZE))
            if size > want:
                raise OSError("parent answered more than asked")
            data = self._exactly(size)
            chunks.append(data)
            if size < want:
                break  # end of the file
            offset += size
            length -= size
        return b"".join(chunks)

    def send_result(self, payload: bytes) -> None:
        self._out.write(pack_result(payload[:MAX_RESULT]))
        self._out.flush()

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._in.read(size - len(data))
            if not chunk:
                raise OSError("the parent closed the pipe")
            data += chunk
        return data
