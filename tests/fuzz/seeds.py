"""Build the fuzz seeds in ``corpus/seeds`` (``python -m tests.fuzz.seeds`` rewrites them).

Each seed is what a publisher sends, handshake included, chosen to reach a different
corner of the core: a plain publish, extended timestamps past 2^24 ms and across the
2^32 rollover, type-3 silent audio, aggregates, aborts, pings, window
acknowledgements, odd chunk stream ids, and AMF0 of every marker.
"""

from __future__ import annotations

from pathlib import Path

from ingest.rtmp import amf0
from ingest.rtmp.handshake import HANDSHAKE_SIZE
from ingest.rtmp.messages import (
    Abort,
    LimitType,
    MessageType,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
)
from tests.unit.rtmp_peer import (
    ASC_FFMPEG,
    AVC_CONFIG,
    Publisher,
    audio_tag,
    det_random,
    digest_c0c1,
    plain_c0c1,
    video_tag,
)

SEEDS = Path(__file__).parent / "corpus" / "seeds"
VIDEO, AUDIO = MessageType.VIDEO, MessageType.AUDIO


def _handshake(digest: bool = True) -> bytes:
    from ingest.rtmp.handshake import ServerHandshake

    c0c1 = digest_c0c1() if digest else plain_c0c1()
    s012 = ServerHandshake(random_bytes=det_random).respond(c0c1)
    return c0c1 + s012[1 : 1 + HANDSHAKE_SIZE]  # C0+C1, then C2 echoing S1


def _publishing(client: Publisher, key: str = "fuzz-key") -> bytes:
    return _handshake() + client.connect() + client.publish_setup(key)


def plain_publish() -> bytes:
    client = Publisher()
    out = _publishing(client) + client.metadata({"width": 64.0, "height": 64.0, "encoder": "x"})
    out += client.media(VIDEO, 0, video_tag(0, AVC_CONFIG)) + client.media(
        AUDIO, 0, audio_tag(0, ASC_FFMPEG)
    )
    for i in range(20):
        out += client.media(AUDIO, i * 23, audio_tag(1, b"\x21\x10\x04\x60\x8c\x1c"))
        if i % 3 == 0:
            out += client.media(VIDEO, i * 23, video_tag(1, bytes(300), keyframe=i == 0, cts=33))
    return (
        out
        + client.command("FCUnpublish", None, "fuzz-key")
        + client.command("deleteStream", None, 1.0)
    )


def extended_timestamps() -> bytes:
    client = Publisher()
    out = _publishing(client) + client.media(VIDEO, 0, video_tag(0, AVC_CONFIG))
    for i in range(12):
        ts = 0xFFFFFF - 100 + i * 40
        out += client.media(VIDEO, ts, video_tag(1, bytes(400)))
        out += client.media(AUDIO, ts, audio_tag(1, bytes(6)))
    for i in range(6):
        out += client.media(VIDEO, (1 << 32) - 60 + i * 33, video_tag(1, bytes(200)))
    out += client.media(
        VIDEO, 0x01000000 * 3, video_tag(1, bytes(500)), extended_on_continuation=False
    )
    return out


def chunk_size_and_controls() -> bytes:
    client = Publisher()
    out = _handshake(digest=False) + client.set_chunk_size(4096) + client.connect()
    out += client.writer.write(2, MessageType.WINDOW_ACK_SIZE, 0, 0, bytes(WindowAckSize(500)))
    out += client.writer.write(
        2, MessageType.SET_PEER_BANDWIDTH, 0, 0, bytes(SetPeerBandwidth(600_000, LimitType.HARD))
    )
    for control in (
        UserControl(UserControlEvent.PING_REQUEST, 123),
        UserControl(UserControlEvent.SET_BUFFER_LENGTH, 1, 3000),
    ):
        out += client.writer.write(2, MessageType.USER_CONTROL, 0, 0, bytes(control))
    out += client.command("createStream") + client.command("createStream")
    out += client.command("deleteStream", None, 2.0)
    out += client.command("publish", None, "k", "live", stream_id=1, csid=8)
    # The first 4096-byte chunk of a 6000-byte video message, then an Abort (5.4.2).
    partial = client.media(VIDEO, 10, bytes(6000))[: 12 + 4096]
    out += partial + client.writer.write(2, MessageType.ABORT, 0, 0, bytes(Abort(6)))
    out += client.media(VIDEO, 20, video_tag(0, AVC_CONFIG), csid=64)
    out += client.media(AUDIO, 30, audio_tag(0, ASC_FFMPEG), csid=400)
    out += client.writer.write(9, 7, 0, 0, b"an undefined message type")
    out += client.writer.write(9, MessageType.SHARED_OBJECT_AMF0, 0, 0, b"so")
    amf3_data = b"\x00" + amf0.encode_all("onMetaData", {"width": 64.0})
    out += client.writer.write(9, MessageType.DATA_AMF3, 1, 40, amf3_data)
    amf3_command = b"\x00" + amf0.encode_all("FCUnpublish", 9.0, None, "k")
    out += client.writer.write(3, MessageType.COMMAND_AMF3, 0, 0, amf3_command)
    out += client.set_chunk_size(1) + client.media(AUDIO, 53, audio_tag(1, b"abc"), csid=400)
    return out


def aggregate_and_data() -> bytes:
    client = Publisher()

    def sub(type_id: int, ts: int, body: bytes) -> bytes:
        header = (
            bytes((type_id,)) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        )
        return (
            header
            + bytes((ts >> 24,))
            + b"\x00\x00\x00"
            + body
            + (11 + len(body)).to_bytes(4, "big")
        )

    meta = amf0.encode_all("onMetaData", amf0.ECMAArray({"a": 1.0}))
    aggregate = (
        sub(9, 100, video_tag(0, AVC_CONFIG))
        + sub(8, 110, audio_tag(0, ASC_FFMPEG))
        + sub(18, 120, meta)
    )
    out = _publishing(client) + client.media(MessageType.AGGREGATE, 1000, aggregate, csid=6)
    every_marker = amf0.encode_all(
        "onTextData",
        1.5,
        True,
        "s",
        None,
        {"o": [1.0, {"n": None}]},
        amf0.ECMAArray({"e": "x" * 300}),
    )
    out += client.writer.write(6, MessageType.DATA_AMF0, 1, 1100, every_marker)
    out += client.command("play", None, "x") + client.command("closeStream", None, stream_id=1)
    return out


def silent_audio() -> bytes:
    client = Publisher()
    out = _publishing(client) + client.media(AUDIO, 0, audio_tag(0, ASC_FFMPEG), csid=6)
    for i in range(60):
        out += client.media(AUDIO, i * 23, audio_tag(1, b"\x21\x10\x04\x60\x8c\x1c"), csid=6)
    return out


BUILDERS = {
    "plain_publish.bin": plain_publish,
    "extended_timestamps.bin": extended_timestamps,
    "chunk_size_and_controls.bin": chunk_size_and_controls,
    "aggregate_and_data.bin": aggregate_and_data,
    "silent_audio.bin": silent_audio,
}


def main() -> None:
    SEEDS.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        data = build()
        (SEEDS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
