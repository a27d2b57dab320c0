"""The RTMP chunk stream (RTMP spec 5.3): messages cut into chunks, and put back together.

A chunk is a basic header (5.3.1.1: format and chunk stream id, 1-3 bytes), a message
header of 11, 7, 3 or 0 bytes (5.3.1.2: types 0-3), an optional 4-byte extended
timestamp (5.3.1.3) and up to ``chunk_size`` payload bytes. Types 1-3 take the
missing fields from the previous chunk of the same chunk stream.

The two cases pyrtmp got wrong (NOTES.md, "Media") are handled here:

- A type-3 header that *starts a new message* repeats the previous timestamp delta:
  the message's timestamp is the previous one plus that delta (5.3.1.2.4). Encoders
  send constant-size silent AAC frames exactly this way; dropping the delta made
  audio end at 4.1 s of 6.06 s.
- A timestamp field of 0xFFFFFF means a 4-byte extended timestamp follows; it is
  repeated on every type-3 chunk of the chunk stream, continuation chunks included
  (5.3.1.3, and what ffmpeg and librtmp write). Some encoders leave it out on
  continuations, so there the 4 bytes are taken only when they repeat the value the
  message started with (SRS does the same).

Timestamps are 32-bit and wrap (5.3.1.3 / 6.1.1: "timestamps ... roll over"); all
arithmetic here is modulo 2^32. :class:`TimestampUnwrapper` turns them back into
ever-growing milliseconds.

Reading is incremental: payload bytes move into the message as they arrive, so no
buffer is sized by what a header *claims* — only by what really came.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.limits import DEFAULT_LIMITS, Limits
from ingest.rtmp.messages import MAX_CHUNK_SIZE, Message

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ChunkReader",
    "ChunkWriter",
    "TimestampUnwrapper",
    "encode_basic_header",
]

DEFAULT_CHUNK_SIZE: Final = 128  # 5.4.1: "The maximum chunk size defaults to 128 bytes"
EXTENDED: Final = 0xFFFFFF  # 5.3.1.3: the timestamp field value that means "see extended"
MASK32: Final = 0xFFFFFFFF
HALF32: Final = 0x80000000
MIN_CSID: Final = 2  # 5.3.1.1: 0 and 1 mark the 2- and 3-byte forms; 2 is the lowest id
MAX_CSID: Final = 65599
_HEADER_SIZES: Final = (11, 7, 3, 0)  # 5.3.1.2.1-5.3.1.2.4
# Compact the input buffer once this much of it has been consumed.
_COMPACT_AT: Final = 64 * 1024

_U32_BE = struct.Struct(">I")
_U32_LE = struct.Struct("<I")


def _u24(buf: bytearray | bytes, offset: int) -> int:
    return (buf[offset] << 16) | (buf[offset + 1] << 8) | buf[offset + 2]


@dataclass(slots=True)
class _InStream:
    """What one chunk stream remembers between chunks (5.3.1.2: "previous chunk")."""

    csid: int
    seen: bool = False  # a type-0 or type-1 header has set length, type and stream id
    timestamp: int = 0  # the absolute timestamp of the last message started here
    ts_marker: int = 0  # the last 24-bit timestamp field (0xFFFFFF: extended)
    ts_value: int = 0  # its value: the extended timestamp when the marker says so
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    payload: bytearray | None = None  # the message being reassembled


@dataclass(slots=True)
class _Header:
    """One parsed chunk header (5.3.1), before it is applied to its chunk stream."""

    fmt: int
    csid: int
    ts_marker: int  # the 24-bit field as sent (0xFFFFFF: extended follows)
    ts_value: int  # the timestamp or delta it stands for
    length: int
    type_id: int
    stream_id: int = 0
    end: int = 0  # where the chunk's payload starts in the buffer


class ChunkReader:
    """Bytes in, whole :class:`Message` objects out; :class:`ProtocolError` on bad input."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _InStream] = {}
        self._current: _InStream | None = None  # whose chunk payload is being read
        self._chunk_left = 0
        self._partial_bytes = 0  # bytes held in unfinished messages

    @property
    def buffered(self) -> int:
        """Bytes held for this connection: unparsed input plus unfinished messages."""
        return len(self._buf) - self._pos + self._partial_bytes

    def receive(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        if self.buffered > self.limits.max_buffered_bytes:
            raise ProtocolError(
                f"chunk stream: {self.buffered} bytes held in unread input and unfinished "
                f"messages, over the {self.limits.max_buffered_bytes}-byte limit "
                "(5.3.1: chunks of many messages interleave, none of them finishing)"
            )

    def set_chunk_size(self, size: int) -> None:
        """5.4.1: applies to every chunk the peer sends after its Set Chunk Size."""
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ProtocolError(f"Set Chunk Size: {size} outside 1..{MAX_CHUNK_SIZE} (5.4.1)")
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        """5.4.2 Abort Message: drop the partly received message on ``csid``."""
        stream = self._streams.get(csid)
        if stream is None or stream.payload is None:
            return
        self._partial_bytes -= len(stream.payload)
        stream.payload = None
        if self._current is stream:  # pragma: no cover - an Abort arrives between chunks
            self._current = None

    def next_message(self) -> Message | None:
        """The next complete message, or None when more bytes are needed."""
        while True:
            stream = self._current
            if stream is None:
                stream = self._read_header()
                if stream is None:
                    return None
                assert stream.payload is not None
                if stream.length == 0:
                    self._current = None
                    stream.payload = None
                    return Message(
                        stream.type_id, stream.stream_id, stream.timestamp, b"", stream.csid
                    )
            payload = stream.payload
            assert payload is not None
            take = min(self._chunk_left, len(self._buf) - self._pos)
            if take:
                with memoryview(self._buf) as view:
                    payload += view[self._pos : self._pos + take]
                self._pos += take
                self._chunk_left -= take
                self._partial_bytes += take
            if self._chunk_left:
                if self._pos >= _COMPACT_AT:
                    del self._buf[: self._pos]
                    self._pos = 0
                return None
            self._current = None
            if len(payload) == stream.length:
                self._partial_bytes -= stream.length
                stream.payload = None
                return Message(
                    stream.type_id, stream.stream_id, stream.timestamp, bytes(payload), stream.csid
                )

    def _read_header(self) -> _InStream | None:
        """Parse one buffered chunk header; start (or go on with) its message."""
        peeked = self._peek_header()
        if peeked is None:
            return None
        header, stream = peeked
        self._pos = header.end
        self._streams[header.csid] = stream
        if stream.payload is not None:
            if header.fmt != 3 and (
                header.length != stream.length or header.type_id != stream.type_id
            ):
                raise ProtocolError(
                    f"chunk stream {header.csid}: type-{header.fmt} header declaring a new "
                    f"message in the middle of one ({len(stream.payload)} of {stream.length} "
                    "bytes received; 5.3.1.2.4: the rest of a message comes in type-3 chunks)"
                )
            # Same length and type: tolerated (ffmpeg's reader does too); the message
            # keeps the timestamp it started with.
        else:
            self._start_message(header, stream)
        assert stream.payload is not None
        self._current = stream
        self._chunk_left = min(self.chunk_size, stream.length - len(stream.payload))
        return stream

    def _start_message(self, header: _Header, stream: _InStream) -> None:
        if header.fmt == 0:
            stream.timestamp = header.ts_value
        else:
            # Types 1 and 2 carry a delta; type 3 repeats the previous one (5.3.1.2.4:
            # after a type-0 chunk, that chunk's timestamp serves as the delta).
            stream.timestamp = (stream.timestamp + header.ts_value) & MASK32
        limit = self.limits.max_message(header.type_id)
        if header.length > limit:
            raise ProtocolError(
                f"chunk stream {header.csid}: message of type {header.type_id} declares "
                f"{header.length} bytes, over the {limit}-byte limit for that type"
            )
        stream.stream_id = header.stream_id
        stream.ts_marker = header.ts_marker
        stream.ts_value = header.ts_value
        stream.length = header.length
        stream.type_id = header.type_id
        stream.seen = True
        # Grows with what arrives: a header's claim alone allocates nothing.
        stream.payload = bytearray()

    def _peek_header(self) -> tuple[_Header, _InStream] | None:
        """The next chunk header and its chunk stream, consuming nothing; None if incomplete."""
        buf = self._buf
        end = len(buf)
        basic = _basic_header(buf, self._pos)
        if basic is None:
            return None
        fmt, csid, cursor = basic
        size = _HEADER_SIZES[fmt]
        if cursor + size > end:
            return None
        stream = self._stream(csid, fmt)
        header = _Header(fmt, csid, stream.ts_marker, 0, stream.length, stream.type_id)
        header.stream_id = stream.stream_id
        if fmt <= 2:
            header.ts_marker = _u24(buf, cursor)
        if fmt <= 1:
            header.length = _u24(buf, cursor + 3)
            header.type_id = buf[cursor + 6]
        if fmt == 0:
            # 5.3.1.2.1: the message stream id is little-endian. (A type-1 header may
            # open a chunk stream: librtmp sends control messages that way, SRS accepts
            # it; the stream id is then 0.)
            header.stream_id = int(_U32_LE.unpack_from(buf, cursor + 7)[0])
        cursor += size
        header.ts_value = header.ts_marker
        if header.ts_marker == EXTENDED:  # 5.3.1.3
            if cursor + 4 > end:
                return None
            extended = int(_U32_BE.unpack_from(buf, cursor)[0])
            if (
                fmt == 3
                and stream.payload is not None
                and extended not in (stream.ts_value, stream.timestamp)
            ):
                # A continuation chunk without the repeated extended timestamp: these 4
                # bytes are payload (encoders that skip it on continuations; SRS too).
                header.ts_value = stream.ts_value
            else:
                cursor += 4
                header.ts_value = extended
        header.end = cursor
        return header, stream

    def _stream(self, csid: int, fmt: int) -> _InStream:
        stream = self._streams.get(csid)
        if (stream is None or not stream.seen) and fmt >= 2:
            raise ProtocolError(
                f"chunk stream {csid}: type-{fmt} chunk with no previous chunk to take its "
                "length and message type from (5.3.1.2.1: type 0 starts a chunk stream)"
            )
        if stream is None:
            if len(self._streams) >= self.limits.max_chunk_streams:
                raise ProtocolError(
                    f"chunk stream {csid}: more than {self.limits.max_chunk_streams} chunk "
                    "streams on one connection"
                )
            stream = _InStream(csid)
        return stream


def _basic_header(buf: bytearray, cursor: int) -> tuple[int, int, int] | None:
    """5.3.1.1: (fmt, chunk stream id, where the message header starts), or None."""
    end = len(buf)
    if cursor >= end:
        return None
    fmt, csid = buf[cursor] >> 6, buf[cursor] & 0x3F
    cursor += 1
    if csid == 0:  # 2-byte form, ids 64-319
        if cursor + 1 > end:
            return None
        return fmt, 64 + buf[cursor], cursor + 1
    if csid == 1:  # 3-byte form, ids 64-65599
        if cursor + 2 > end:
            return None
        return fmt, 64 + buf[cursor] + (buf[cursor + 1] << 8), cursor + 2
    return fmt, csid, cursor


def encode_basic_header(fmt: int, csid: int) -> bytes:
    """5.3.1.1: 1 byte for ids 2-63, 2 bytes for 64-319, 3 bytes for 320-65599."""
    if not MIN_CSID <= csid <= MAX_CSID:
        raise ValueError(f"chunk stream id {csid} outside {MIN_CSID}..{MAX_CSID}")
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))


@dataclass(slots=True)
class _OutStream:
    timestamp: int
    ts_value: int  # the last timestamp field's value (absolute for type 0, else the delta)
    length: int
    type_id: int
    stream_id: int


class ChunkWriter:
    """Messages in, chunk bytes out, with the header compression ffmpeg uses.

    ``fmt`` forces a header type (tests build the edge cases with it); by default:
    type 0 for the first message on a chunk stream, another message stream or a
    timestamp going back; type 1 when length or type change; type 2 for a new delta;
    type 3 when even the delta repeats.
    """

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._streams: dict[int, _OutStream] = {}

    def write(
        self,
        csid: int,
        type_id: int,
        stream_id: int,
        timestamp: int,
        payload: bytes,
        *,
        fmt: int | None = None,
        extended_on_continuation: bool = True,
    ) -> bytes:
        timestamp &= MASK32
        prev = self._streams.get(csid)
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"message of {length} bytes does not fit the 3-byte length field")
        delta = (timestamp - prev.timestamp) & MASK32 if prev else 0
        fmt = _choose_fmt(
            prev,
            csid=csid,
            type_id=type_id,
            stream_id=stream_id,
            length=length,
            delta=delta,
            fmt=fmt,
        )
        ts_value = timestamp if fmt == 0 else delta
        marker = min(ts_value, EXTENDED)
        out = bytearray(encode_basic_header(fmt, csid))
        if fmt <= 2:
            out += marker.to_bytes(3, "big")
        if fmt <= 1:
            out += length.to_bytes(3, "big")
            out.append(type_id)
        if fmt == 0:
            out += _U32_LE.pack(stream_id)
        extended = marker == EXTENDED
        if extended:
            out += _U32_BE.pack(ts_value)
        continuation = encode_basic_header(3, csid)
        if extended and extended_on_continuation:
            continuation += _U32_BE.pack(ts_value)
        step = self.chunk_size
        out += payload[:step]
        for offset in range(step, length, step):
            out += continuation
            out += payload[offset : offset + step]
        self._streams[csid] = _OutStream(timestamp, ts_value, length, type_id, stream_id)
        return bytes(out)


def _choose_fmt(
    prev: _OutStream | None,
    *,
    csid: int,
    type_id: int,
    stream_id: int,
    length: int,
    delta: int,
    fmt: int | None,
) -> int:
    if fmt is None:
        if prev is None or prev.stream_id != stream_id or delta >= HALF32:
            return 0
        if prev.type_id != type_id or prev.length != length:
            return 1
        return 2 if prev.ts_value != delta else 3
    if fmt == 0:
        return 0
    if prev is None:
        raise ValueError(f"type-{fmt} header needs a previous message on csid {csid}")
    if prev.stream_id != stream_id:
        raise ValueError(f"type-{fmt} header cannot change the message stream id")
    if fmt >= 2 and (prev.type_id != type_id or prev.length != length):
        raise ValueError(f"type-{fmt} header cannot change length or type")
    if fmt == 3 and prev.ts_value != delta:
        raise ValueError(f"type-3 header implies delta {prev.ts_value}, message needs {delta}")
    return fmt


class TimestampUnwrapper:
    """32-bit RTMP timestamps (which wrap every 49.7 days) → ever-growing milliseconds.

    Each new value is placed nearest to the previous one (serial number arithmetic,
    RFC 1982): a step of less than 2^31 forward is forward (wrapping included), a
    larger one is a step back.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def __call__(self, timestamp: int) -> int:
        timestamp &= MASK32
        if self._last is None:
            self._last = timestamp
            return timestamp
        delta = (timestamp - self._last) & MASK32
        if delta >= HALF32:
            delta -= 1 << 32
        self._last += delta
        return self._last
