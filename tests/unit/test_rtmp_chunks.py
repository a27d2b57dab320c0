"""The chunk stream (RTMP 5.3): header types, chunk stream ids, timestamps, limits.

Includes pyrtmp's two failures (NOTES.md, "Media") on synthetic bytes built by our own
chunk writer: type-3 headers that start a new message (constant-size silent AAC), and
extended timestamps on continuation chunks past 2^24 ms and across the 2^32 rollover.
"""

from __future__ import annotations

import random

import pytest

from ingest.rtmp.chunks import (
    DEFAULT_CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
    TimestampUnwrapper,
    encode_basic_header,
)
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.limits import Limits
from ingest.rtmp.messages import Message, MessageType
from tests.unit.rtmp_peer import fixture_messages

pytestmark = pytest.mark.unit

AUDIO, VIDEO, COMMAND = MessageType.AUDIO, MessageType.VIDEO, MessageType.COMMAND_AMF0
FOUR_H_40 = (4 * 60 + 40) * 60 * 1000  # pyrtmp crashed after ~4 h 40 min: 16,800,000 ms > 2^24


def read_all(
    data: bytes,
    *,
    limits: Limits | None = None,
    piece: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[Message]:
    reader = ChunkReader(limits or Limits())
    reader.set_chunk_size(chunk_size)
    out: list[Message] = []
    step = piece or len(data) or 1
    for start in range(0, len(data), step):
        reader.receive(data[start : start + step])
        while (message := reader.next_message()) is not None:
            out.append(message)
    return out


def fmts(data: bytes, chunk_size: int, payload_sizes: list[int]) -> list[int]:
    """The header type of each message's first chunk (one chunk stream, ids below 64)."""
    types, offset, extended = [], 0, False
    header_sizes = {0: 11, 1: 7, 2: 3, 3: 0}
    for size in payload_sizes:
        fmt = data[offset] >> 6
        types.append(fmt)
        if fmt != 3:
            extended = data[offset + 1 : offset + 4] == b"\xff\xff\xff"
        ext = 4 if extended else 0
        chunks = max(1, -(-size // chunk_size))
        offset += 1 + header_sizes[fmt] + ext + size + (chunks - 1) * (1 + ext)
    assert offset == len(data)
    return types


# --- basic headers (5.3.1.1) --------------------------------------------------------


@pytest.mark.parametrize(
    ("csid", "wire"),
    [
        (2, b"\x02"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        (65599, b"\x01\xff\xff"),
    ],
)
def test_basic_header_forms(csid: int, wire: bytes) -> None:
    assert encode_basic_header(0, csid) == wire
    message = ChunkWriter().write(csid, COMMAND, 0, 5, b"hello")
    assert read_all(message) == [Message(COMMAND, 0, 5, b"hello", csid)]


def test_the_3_byte_form_may_carry_small_ids() -> None:
    # csid 100 in the 3-byte form (64 + 36 + 0 * 256): legal, and read as 100.
    header = bytes((0x01, 36, 0)) + (7).to_bytes(3, "big") + (2).to_bytes(3, "big")
    header += bytes((COMMAND,)) + b"\x00\x00\x00\x00"
    assert read_all(header + b"hi") == [Message(COMMAND, 0, 7, b"hi", 100)]


def test_basic_header_refuses_ids_outside_the_space() -> None:
    with pytest.raises(ValueError, match=r"outside 2\.\.65599"):
        encode_basic_header(0, 1)


# --- header types and reassembly ----------------------------------------------------


def test_all_four_header_types_and_their_timestamps() -> None:
    writer = ChunkWriter()
    sizes = [10, 20, 20, 20, 20]
    wire = b"".join(
        [
            writer.write(4, AUDIO, 1, 1000, b"a" * 10),  # type 0: first on the chunk stream
            writer.write(4, AUDIO, 1, 1020, b"b" * 20),  # type 1: new length (delta 20)
            writer.write(4, AUDIO, 1, 1050, b"c" * 20),  # type 2: same length, delta 30
            writer.write(4, AUDIO, 1, 1080, b"d" * 20),  # type 3: same delta
            writer.write(4, AUDIO, 1, 1110, b"e" * 20),  # type 3 again
        ]
    )
    assert fmts(wire, DEFAULT_CHUNK_SIZE, sizes) == [0, 1, 2, 3, 3]
    assert [m.timestamp for m in read_all(wire)] == [1000, 1020, 1050, 1080, 1110]


def test_random_messages_round_trip_whatever_the_split() -> None:
    rng = random.Random(5)
    chunk_size = rng.choice([1, 7, 128, 4096])
    writer = ChunkWriter(chunk_size=chunk_size)
    sent: list[Message] = []
    wire = bytearray()
    clocks = {3: 0, 4: 0, 6: 0, 70: 0, 400: 0}
    for _ in range(300):
        csid = rng.choice(list(clocks))
        clocks[csid] += rng.choice([0, 1, 23, 33, 0xFFFFFF, 0x1000000])
        size = rng.choice([0, 1, 5, 127, 128, 129, 3000])
        payload = rng.randbytes(size)
        type_id = rng.choice([AUDIO, VIDEO])
        wire += writer.write(csid, type_id, 1, clocks[csid], payload)
        sent.append(Message(type_id, 1, clocks[csid] & 0xFFFFFFFF, payload, csid))
    for piece in (1, 13, 4096, None):
        assert read_all(bytes(wire), piece=piece, chunk_size=chunk_size) == sent


def test_interleaved_chunks_of_different_chunk_streams() -> None:
    writer = ChunkWriter(chunk_size=4)
    video = writer.write(6, VIDEO, 1, 40, b"VVVVvvvvWW")  # 3 chunks: 4 + 4 + 2
    audio = writer.write(4, AUDIO, 1, 23, b"AAAAaa")  # 2 chunks: 4 + 2
    # 5.3.1: chunks of different chunk streams may interleave.
    v1, v2, v3 = video[:16], video[16:21], video[21:]
    a1, a2 = audio[:16], audio[16:]
    messages = read_all(v1 + a1 + v2 + a2 + v3, chunk_size=4)
    assert [(m.csid, m.payload) for m in messages] == [(4, b"AAAAaa"), (6, b"VVVVvvvvWW")]


def test_a_zero_length_message() -> None:
    assert read_all(ChunkWriter().write(3, COMMAND, 0, 0, b"")) == [Message(COMMAND, 0, 0, b"", 3)]


def test_chunk_size_changes_apply_to_the_next_chunk() -> None:
    reader = ChunkReader()
    writer = ChunkWriter()
    reader.receive(writer.write(4, AUDIO, 1, 0, b"x" * 300))  # 128-byte chunks
    assert reader.next_message() == Message(AUDIO, 1, 0, b"x" * 300, 4)
    reader.set_chunk_size(4096)
    writer.chunk_size = 4096
    reader.receive(writer.write(4, AUDIO, 1, 10, b"y" * 3000))  # one chunk
    assert reader.next_message() == Message(AUDIO, 1, 10, b"y" * 3000, 4)


def test_abort_drops_the_partial_message() -> None:
    reader = ChunkReader()
    wire = ChunkWriter().write(4, AUDIO, 1, 0, b"z" * 200)
    reader.receive(wire[:50])
    assert reader.next_message() is None
    reader.abort(4)  # 5.4.2
    assert reader.buffered == 0
    reader.receive(ChunkWriter().write(4, AUDIO, 1, 0, b"fresh"))
    assert reader.next_message() == Message(AUDIO, 1, 0, b"fresh", 4)


# --- pyrtmp (a): type-3 headers that start a new message ------------------------------


def test_silent_audio_type3_headers_carry_the_delta() -> None:
    """Constant-size AAC frames, 23 ms apart: after one type-2 header, all type 3."""
    writer = ChunkWriter()
    frames = 260  # ~6 s of AAC at 44.1 kHz
    wire = b"".join(
        writer.write(4, AUDIO, 1, i * 23, b"\xaf\x01\x21\x10\x04\x60\x8c\x1c")
        for i in range(frames)
    )
    assert fmts(wire, DEFAULT_CHUNK_SIZE, [8] * frames)[:4] == [0, 2, 3, 3]
    stamps = [m.timestamp for m in read_all(wire)]
    assert stamps == [i * 23 for i in range(frames)]
    assert stamps[-1] == 5957  # pyrtmp stopped adding the delta: its audio ended at 4.1 s


def test_type3_after_type0_uses_that_timestamp_as_delta() -> None:
    # 5.3.1.2.4: "If a Type 3 chunk follows a Type 0 chunk, then the timestamp delta for
    # this Type 3 chunk is the same as the timestamp of the Type 0 chunk."
    writer = ChunkWriter()
    wire = writer.write(4, AUDIO, 1, 100, b"aa") + writer.write(4, AUDIO, 1, 200, b"bb", fmt=3)
    assert wire[len(wire) - 3] >> 6 == 3
    assert [m.timestamp for m in read_all(wire)] == [100, 200]


def test_type3_new_message_with_an_extended_delta() -> None:
    writer = ChunkWriter()
    big = 0x1000000  # a delta that needs the extended field
    wire = b"".join(writer.write(4, AUDIO, 1, i * big, b"abcd") for i in range(4))
    assert fmts(wire, DEFAULT_CHUNK_SIZE, [4] * 4) == [0, 2, 3, 3]
    assert [m.timestamp for m in read_all(wire)] == [(i * big) & 0xFFFFFFFF for i in range(4)]


def test_the_captured_ffmpeg_session_uses_type3_for_audio() -> None:
    audio = [m.timestamp for m in fixture_messages("ffmpeg_silent_6s.bin") if m.type_id == AUDIO]
    assert audio[-1] >= 6000  # 6 s of silent AAC, 142 of its frames on type-3 headers
    assert audio == sorted(audio)


# --- pyrtmp (b): extended timestamps, 2^24 and 2^32 -----------------------------------


def test_extended_timestamp_on_continuation_chunks() -> None:
    writer = ChunkWriter(chunk_size=128)
    payload = bytes(range(256)) * 4  # 1024 bytes: 8 chunks
    wire = writer.write(6, VIDEO, 1, FOUR_H_40, payload)
    continuation = b"\xc6" + FOUR_H_40.to_bytes(4, "big")
    assert wire.count(continuation) == 7  # 5.3.1.3: repeated on every type-3 chunk
    assert read_all(wire) == [Message(VIDEO, 1, FOUR_H_40, payload, 6)]
    assert read_all(wire, piece=1) == [Message(VIDEO, 1, FOUR_H_40, payload, 6)]


def test_extended_timestamp_left_out_on_continuations_is_tolerated() -> None:
    writer = ChunkWriter(chunk_size=128)
    payload = bytes(range(256)) * 4
    wire = writer.write(6, VIDEO, 1, FOUR_H_40, payload, extended_on_continuation=False)
    assert read_all(wire) == [Message(VIDEO, 1, FOUR_H_40, payload, 6)]


def test_a_stream_crossing_2_24_ms() -> None:
    """Video (multi-chunk) and audio (type 3) from 4 h 39 min 58 s to past 4 h 40 min."""
    writer = ChunkWriter(chunk_size=128)
    start = 0xFFFFFF - 2000
    sent, wire = [], bytearray()
    for i in range(200):
        ts_audio = start + i * 23
        wire += writer.write(4, AUDIO, 1, ts_audio, b"\xaf\x01" + b"\x00" * 6)
        sent.append((AUDIO, ts_audio))
        if i % 3 == 0:
            ts_video = start + i * 23 + 5
            wire += writer.write(6, VIDEO, 1, ts_video, bytes(700))
            sent.append((VIDEO, ts_video))
    got = [(m.type_id, m.timestamp) for m in read_all(bytes(wire), piece=977)]
    assert got == sent
    assert got[-1][1] > 0xFFFFFF


def test_the_2_32_rollover() -> None:
    writer = ChunkWriter(chunk_size=128)
    unwrap = TimestampUnwrapper()
    start = (1 << 32) - 1000
    wire = b"".join(writer.write(6, VIDEO, 1, start + i * 33, bytes(300)) for i in range(100))
    raw = [m.timestamp for m in read_all(wire)]
    assert max(raw) < 1 << 32
    assert raw[40] < raw[20]  # wrapped on the wire…
    assert [unwrap(t) for t in raw] == [start + i * 33 for i in range(100)]  # …not for us


def test_timestamps_going_backwards_use_a_type0_header() -> None:
    writer = ChunkWriter()
    wire = writer.write(4, AUDIO, 1, 5000, b"ab") + writer.write(4, AUDIO, 1, 4000, b"ab")
    assert wire[len(wire) - 14] >> 6 == 0
    assert [m.timestamp for m in read_all(wire)] == [5000, 4000]


def test_unwrapper_steps() -> None:
    unwrap = TimestampUnwrapper()
    assert [unwrap(t) for t in (0xFFFFFFF0, 0x10, 0x05, 0x7FFFFFFF)] == [
        0xFFFFFFF0,
        0x100000010,
        0x100000005,
        0x17FFFFFFF,
    ]


# --- refusals ------------------------------------------------------------------------


def _header(fmt: int, csid: int = 5) -> bytes:
    return bytes(((fmt << 6) | csid,))


@pytest.mark.parametrize("fmt", [2, 3])
def test_types_2_and_3_need_a_previous_chunk(fmt: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_all(_header(fmt) + b"\x00" * 3)
    assert str(caught.value) == (
        f"chunk stream 5: type-{fmt} chunk with no previous chunk to take its length and "
        "message type from (5.3.1.2.1: type 0 starts a chunk stream)"
    )


def test_a_fresh_type1_chunk_is_accepted_like_librtmp_sends_it() -> None:
    # librtmp opens chunk stream 2 with a type-1 Ping (SRS issue #98): stream id 0.
    wire = _header(1, 2) + b"\x00\x00\x00" + b"\x00\x00\x06" + b"\x04" + b"\x00\x06\x00\x00\x0d\x0f"
    assert read_all(wire) == [
        Message(MessageType.USER_CONTROL, 0, 0, b"\x00\x06\x00\x00\x0d\x0f", 2)
    ]


def test_a_new_message_header_in_the_middle_of_one() -> None:
    first_chunk = ChunkWriter().write(4, AUDIO, 1, 0, b"x" * 200)[: 12 + 128]
    other = ChunkWriter().write(4, AUDIO, 1, 0, b"y" * 50)  # type 0, another length
    with pytest.raises(ProtocolError) as caught:
        read_all(first_chunk + other)
    assert str(caught.value) == (
        "chunk stream 4: type-0 header declaring a new message in the middle of one "
        "(128 of 200 bytes received; 5.3.1.2.4: the rest of a message comes in type-3 chunks)"
    )


def test_a_repeated_header_with_the_same_length_is_tolerated() -> None:
    # ffmpeg's reader accepts a type-0/1/2 header mid-message when the length is unchanged.
    full = ChunkWriter().write(4, AUDIO, 1, 0, b"x" * 200)
    repeat = ChunkWriter().write(4, AUDIO, 1, 99, b"x" * 200)[:12]  # a type-0 header
    wire = full[:140] + repeat + full[141:]
    assert read_all(wire) == [Message(AUDIO, 1, 0, b"x" * 200, 4)]


def test_the_exact_message_limit_and_one_more() -> None:
    limits = Limits(max_audio_message=1000)
    assert read_all(ChunkWriter().write(4, AUDIO, 1, 0, b"a" * 1000), limits=limits)
    with pytest.raises(ProtocolError) as caught:
        read_all(ChunkWriter().write(4, AUDIO, 1, 0, b"a" * 1001), limits=limits)
    assert str(caught.value) == (
        "chunk stream 4: message of type 8 declares 1001 bytes, over the 1000-byte limit "
        "for that type"
    )


def test_a_16_mib_header_without_a_body_allocates_nothing() -> None:
    declared = 0xFFFFFF
    header = (
        b"\x06"
        + b"\x00\x00\x00"
        + declared.to_bytes(3, "big")
        + bytes((VIDEO,))
        + b"\x01\x00\x00\x00"
    )
    reader = ChunkReader(Limits(max_video_message=declared))  # even when allowed
    reader.receive(header)
    assert reader.next_message() is None
    assert reader.buffered == 0  # nothing held: the payload grows only as it arrives
    with pytest.raises(ProtocolError, match="declares 16777215 bytes, over the 8388608-byte"):
        read_all(header)  # and with the default 8 MiB video limit it is refused at once


def test_many_interleaved_partial_messages_stay_under_the_cap() -> None:
    limits = Limits(max_buffered_bytes=64 * 1024)
    reader = ChunkReader(limits)
    reader.set_chunk_size(1000)
    writer = ChunkWriter(chunk_size=1000)
    partials = []
    for csid in range(3, 65):  # 62 chunk streams (64 takes the 2-byte basic header)
        header = len(encode_basic_header(0, csid)) + 11
        partials.append(writer.write(csid, VIDEO, 1, 0, bytes(4000))[: header + 1000])
    for first_chunk in partials:  # 62 messages, each 1000 of 4000 bytes in
        reader.receive(first_chunk)
        assert reader.next_message() is None
    assert reader.buffered == 62 * 1000
    with pytest.raises(ProtocolError) as caught:
        reader.receive(b"\x06" * 4000)
    assert str(caught.value) == (
        "chunk stream: 66000 bytes held in unread input and unfinished messages, over the "
        "65536-byte limit (5.3.1: chunks of many messages interleave, none of them finishing)"
    )


def test_the_number_of_chunk_streams_is_capped() -> None:
    writer = ChunkWriter()
    wire = b"".join(writer.write(3 + i, AUDIO, 1, 0, b"a") for i in range(64))
    assert len(read_all(wire)) == 64
    with pytest.raises(ProtocolError) as caught:
        read_all(wire + writer.write(100, AUDIO, 1, 0, b"a"))
    assert str(caught.value) == "chunk stream 100: more than 64 chunk streams on one connection"


@pytest.mark.parametrize("size", [0, 0x80000000])
def test_set_chunk_size_bounds(size: int) -> None:
    with pytest.raises(ProtocolError, match=r"outside 1\.\.2147483647"):
        ChunkReader().set_chunk_size(size)


@pytest.mark.parametrize("size", [1, 0x7FFFFFFF])
def test_extreme_valid_chunk_sizes_work(size: int) -> None:
    reader = ChunkReader()
    reader.set_chunk_size(size)
    reader.receive(ChunkWriter(chunk_size=size).write(4, AUDIO, 1, 7, b"payload!"))
    assert reader.next_message() == Message(AUDIO, 1, 7, b"payload!", 4)
