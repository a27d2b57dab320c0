"""A scripted RTMP publisher for tests: the bytes a client sends, and a reader for replies.

It builds chunks with the production :class:`ChunkWriter` (header compression,
extended timestamps, forced header types), so a test can say *exactly* which header
each message travels with; :class:`ServerReplies` parses what the server answered.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ingest.rtmp import amf0
from ingest.rtmp.chunks import ChunkReader, ChunkWriter
from ingest.rtmp.connection import RTMPConnection
from ingest.rtmp.events import (
    Closed,
    ConnectRequested,
    Event,
    NeedData,
    PublishRequested,
)
from ingest.rtmp.handshake import (
    CLIENT_KEY_PARTIAL,
    HANDSHAKE_SIZE,
    digest_offset,
    packet_digest,
)
from ingest.rtmp.limits import Limits
from ingest.rtmp.messages import (
    Command,
    DataMessage,
    Message,
    MessageType,
    SetChunkSize,
)

# What the tests' fake publisher uses, like ffmpeg: commands on 3, media on 4/6.
CSID_COMMAND = 3
CSID_AUDIO = 4
CSID_VIDEO = 6
CSID_DATA = 6


_DETERMINISTIC = bytes(i * 7 % 251 for i in range(4 * HANDSHAKE_SIZE))


def det_random(size: int) -> bytes:
    """Deterministic "random" bytes, so handshakes replay byte for byte."""
    if size > len(_DETERMINISTIC):
        raise ValueError(f"det_random serves up to {len(_DETERMINISTIC)} bytes")
    return _DETERMINISTIC[:size]


def plain_c0c1(time: int = 0) -> bytes:
    return b"\x03" + struct.pack(">I", time) + b"\x00" * 4 + det_random(HANDSHAKE_SIZE - 8)


def digest_c0c1(base: int = 8) -> bytes:
    """C0+C1 the way ffmpeg and Flash Player build it (a digest at the schema's offset)."""
    c1 = bytearray(struct.pack(">I", 0) + bytes((9, 0, 124, 2)) + det_random(HANDSHAKE_SIZE - 8))
    offset = digest_offset(bytes(c1), base)
    c1[offset : offset + 32] = packet_digest(bytes(c1), offset, CLIENT_KEY_PARTIAL)
    return b"\x03" + bytes(c1)


def c2_for(s0s1s2: bytes) -> bytes:
    """The plain C2: an echo of S1."""
    return s0s1s2[1 : 1 + HANDSHAKE_SIZE]


class Publisher:
    """Builds a publisher's bytes; every method returns what to feed the server."""

    def __init__(self, chunk_size: int = 128) -> None:
        self.writer = ChunkWriter(chunk_size)
        self.tid = 0.0

    def set_chunk_size(self, size: int, *, raw: bytes | None = None) -> bytes:
        payload = raw if raw is not None else bytes(SetChunkSize(size))
        out = self.writer.write(2, MessageType.SET_CHUNK_SIZE, 0, 0, payload)
        if raw is None:
            self.writer.chunk_size = size
        return out

    def command(
        self,
        name: str,
        obj: amf0.AMF0Value = None,
        *args: amf0.AMF0Value,
        stream_id: int = 0,
        csid: int = CSID_COMMAND,
        tid: float | None = None,
    ) -> bytes:
        if tid is None:
            self.tid += 1
            tid = self.tid
        payload = bytes(Command(name, tid, obj, tuple(args)))
        return self.writer.write(csid, MessageType.COMMAND_AMF0, stream_id, 0, payload)

    def connect(self, app: str = "live") -> bytes:
        return self.command(
            "connect",
            {"app": app, "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": f"rtmp://h/{app}"},
        )

    def publish_setup(self, key: str, *, stream_id: int = 1) -> bytes:
        """releaseStream, FCPublish, createStream, publish — what ffmpeg sends."""
        return (
            self.command("releaseStream", None, key)
            + self.command("FCPublish", None, key)
            + self.command("createStream", None)
            + self.command("publish", None, key, "live", stream_id=stream_id, csid=8)
        )

    def metadata(self, values: dict[str, amf0.AMF0Value], *, stream_id: int = 1) -> bytes:
        payload = bytes(DataMessage("@setDataFrame", ("onMetaData", amf0.ECMAArray(values))))
        return self.writer.write(CSID_DATA, MessageType.DATA_AMF0, stream_id, 0, payload)

    def media(
        self,
        type_id: int,
        timestamp: int,
        payload: bytes,
        *,
        stream_id: int = 1,
        csid: int | None = None,
        fmt: int | None = None,
        extended_on_continuation: bool = True,
    ) -> bytes:
        if csid is None:
            csid = CSID_VIDEO if type_id == MessageType.VIDEO else CSID_AUDIO
        return self.writer.write(
            csid,
            type_id,
            stream_id,
            timestamp,
            payload,
            fmt=fmt,
            extended_on_continuation=extended_on_continuation,
        )


class ServerReplies:
    """Parses what the server sent (S0+S1+S2 first), following its Set Chunk Size."""

    def __init__(self, *, handshake_done: bool = False) -> None:
        self.reader = ChunkReader(Limits(max_buffered_bytes=1 << 30))
        self.messages: list[Message] = []
        self.handshake = b""
        self._skip = 0 if handshake_done else 1 + 2 * HANDSHAKE_SIZE

    def feed(self, data: bytes) -> list[Message]:
        if self._skip:
            head = data[: self._skip]
            self.handshake += head
            self._skip -= len(head)
            data = data[len(head) :]
        self.reader.receive(data)
        new: list[Message] = []
        while (message := self.reader.next_message()) is not None:
            if message.type_id == MessageType.SET_CHUNK_SIZE:
                self.reader.set_chunk_size(SetChunkSize.parse(message.payload).size)
            new.append(message)
        self.messages += new
        return new

    def commands(self) -> list[Command]:
        return [
            Command.parse(m.payload) for m in self.messages if m.type_id == MessageType.COMMAND_AMF0
        ]


def drive(
    conn: RTMPConnection,
    data: bytes | Iterable[bytes],
    *,
    accept_connect: bool = True,
    accept_publish: bool = True,
    replies: ServerReplies | None = None,
) -> list[Event]:
    """Feed ``data`` (one buffer or pieces), answer decisions, return the events."""
    pieces = [data] if isinstance(data, bytes | bytearray) else list(data)
    events: list[Event] = []
    out = bytearray()
    for piece in pieces:
        conn.receive_data(bytes(piece))
        while True:
            event = conn.next_event()
            out += conn.data_to_send()
            if isinstance(event, NeedData):
                break
            events.append(event)
            if isinstance(event, ConnectRequested):
                out += conn.accept_connect() if accept_connect else conn.reject_connect("no")
            elif isinstance(event, PublishRequested):
                out += (
                    conn.accept_publish()
                    if accept_publish
                    else conn.reject_publish("NetStream.Publish.BadName", "no")
                )
            elif isinstance(event, Closed):
                break
    if replies is not None and out:
        replies.feed(bytes(out))
    return events


def handshake(conn: RTMPConnection, *, digest: bool = True) -> bytes:
    """Run the client side of the handshake against ``conn``; returns S0+S1+S2."""
    conn.receive_data(digest_c0c1() if digest else plain_c0c1())
    assert isinstance(conn.next_event(), NeedData)
    s012 = conn.data_to_send()
    assert len(s012) == 1 + 2 * HANDSHAKE_SIZE
    conn.receive_data(c2_for(s012))
    return s012


# Sequence headers ffmpeg 5.1 publishers sent: x264 ultrafast yuv420p 64x64 (Constrained
# Baseline, from fixtures/rtmp/ffmpeg_silent_6s.bin), x264 on RGB input (High 4:4:4
# Predictive, with the High-profile extension bytes), and AAC-LC 44.1 kHz stereo.
AVC_CONFIG = bytes.fromhex(
    "0142c00affe100166742c00ada109b011000000300100000030140f1226a01000468ce0fc8"
)
AVC_CONFIG_HIGH444 = bytes.fromhex(
    "01f4000affe1001867f4000a91968426c044000003000400000300503c489a8001000568ce0f1920fff8f800"
)
ASC_FFMPEG = bytes.fromhex("121056e500")
AAC_LC_44K_STEREO = bytes((0x12, 0x10))


def video_tag(
    packet_type: int, data: bytes, *, keyframe: bool = True, cts: int = 0, codec: int = 7
) -> bytes:
    first = ((1 if keyframe else 2) << 4) | codec
    return bytes((first, packet_type)) + (cts & 0xFFFFFF).to_bytes(3, "big") + data


def audio_tag(packet_type: int, data: bytes, *, sound_format: int = 10) -> bytes:
    return bytes(((sound_format << 4) | 0x0F, packet_type)) + data


FIXTURES = Path(__file__).parent / "fixtures" / "rtmp"


def fixture_messages(name: str) -> list[Message]:
    """The messages of a captured client→server session (after its C0+C1+C2)."""
    data = (FIXTURES / name).read_bytes()[1 + 2 * HANDSHAKE_SIZE :]
    reader = ChunkReader(Limits())
    reader.receive(data)
    messages = []
    while (message := reader.next_message()) is not None:
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            reader.set_chunk_size(SetChunkSize.parse(message.payload).size)
        messages.append(message)
    return messages


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def amf(*values: Any) -> bytes:
    return amf0.encode_all(*values)
