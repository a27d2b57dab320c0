"""The demo's RTMP publisher against the project's own RTMP server core, over loopback.

An in-process :class:`RTMPServer` (the transport ingest runs) with a small handler that
accepts or refuses the key and records what arrives: the publisher's bytes must make
sense to the server, in the order a real ingest needs them, and every way a publish
ends (refused key, the server hanging up, nobody listening) is a clear error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from common.nats_server import free_port
from ingest.flv import AVCDecoderConfigurationRecord, AVCPacketType, VideoTagHeader
from ingest.rtmp.events import (
    ConnectRequested,
    Event,
    MediaMessage,
    MetaData,
    PublishRequested,
    StreamDeleted,
)
from ingest.rtmp.server import CloseKind, RTMPLink, RTMPServer
from ingest.rtmp_publisher import (
    PublisherClosedError,
    PublisherError,
    PublishRefusedError,
)
from ingest.synthetic import SourceConfig
from ingest.synthetic_live import publish_synthetic

pytestmark = pytest.mark.integration

KEY = "the-right-key"
SMALL = SourceConfig(width=160, height=96, fps=10, video_kbps=200)
DEADLINE_S = 30.0


@dataclass
class Received:
    media: list[MediaMessage] = field(default_factory=list)
    metadata: list[MetaData] = field(default_factory=list)
    deleted: list[StreamDeleted] = field(default_factory=list)
    closed: list[CloseKind] = field(default_factory=list)
    kick_after_video: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class Handler:
    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle(self, link: RTMPLink, event: Event) -> None:
        got = self.received
        if isinstance(event, ConnectRequested):
            link.send(link.conn.accept_connect())
        elif isinstance(event, PublishRequested):
            if event.name == KEY:
                link.send(link.conn.accept_publish())
            else:
                link.send(link.conn.reject_publish("NetStream.Publish.BadName", "wrong key"))
                link.close(CloseKind.LOCAL, "bad key", linger=True)
        elif isinstance(event, MediaMessage):
            got.media.append(event)
            videos = sum(m.is_video for m in got.media)
            if got.kick_after_video is not None and videos >= got.kick_after_video:
                link.close(CloseKind.LOCAL, "stop requested", linger=True)
        elif isinstance(event, MetaData):
            got.metadata.append(event)
        elif isinstance(event, StreamDeleted):
            got.deleted.append(event)

    async def closed(self, link: RTMPLink, kind: CloseKind, detail: str) -> None:
        self.received.closed.append(kind)
        self.received.ended.set()


@dataclass
class Server:
    received: Received
    port: int

    def url(self, key: str = KEY) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    received = Received()
    rtmp = RTMPServer(lambda _link: Handler(received), host="127.0.0.1", port=0)
    await rtmp.start()
    try:
        yield Server(received, rtmp.port)
    finally:
        await rtmp.stop()


async def test_a_publish_arrives_whole_and_in_order(server: Server) -> None:
    started = time.monotonic()
    async with asyncio.timeout(DEADLINE_S):
        report = await publish_synthetic(server.url(), config=SMALL, duration_s=2.0)
    elapsed = time.monotonic() - started
    # Paced like a camera: 2 s of media cannot leave faster than 2 s minus a frame.
    assert elapsed >= 2.0 - 1 / SMALL.fps
    assert report.frames == 2 * SMALL.fps

    got = server.received
    assert got.metadata[0].values["width"] == SMALL.width
    videos = [m for m in got.media if m.is_video]
    audios = [m for m in got.media if not m.is_video]
    first = VideoTagHeader.parse(videos[0].payload)
    assert first.packet_type == AVCPacketType.SEQUENCE_HEADER
    AVCDecoderConfigurationRecord.parse(videos[0].payload[first.size :])
    assert audios[0].payload[1] == 0  # AAC sequence header before any AAC frame
    frames = [VideoTagHeader.parse(m.payload) for m in videos[1:]]
    assert len(frames) == 2 * SMALL.fps
    assert frames[0].keyframe
    assert [m.timestamp for m, h in zip(videos[1:], frames, strict=True) if h.keyframe] == [0, 1000]
    stamps = [m.timestamp for m in videos[1:]]
    assert stamps == sorted(stamps)
    # A clean end: deleteStream (what ffmpeg sends), then the publisher hangs up.
    await asyncio.wait_for(got.ended.wait(), DEADLINE_S)
    assert [d.was_publishing for d in got.deleted] == [True]
    assert got.closed == [CloseKind.PEER]


async def test_a_refused_key_raises_with_the_servers_words(server: Server) -> None:
    with pytest.raises(PublishRefusedError) as refused:
        async with asyncio.timeout(DEADLINE_S):
            await publish_synthetic(server.url("a-wrong-key"), config=SMALL, duration_s=1.0)
    assert refused.value.code == "NetStream.Publish.BadName"
    assert refused.value.description == "wrong key"
    assert server.received.media == []


async def test_the_server_hanging_up_ends_the_publish(server: Server) -> None:
    server.received.kick_after_video = 5
    with pytest.raises(PublisherClosedError):
        async with asyncio.timeout(DEADLINE_S):
            await publish_synthetic(server.url(), config=SMALL, duration_s=30.0)
    assert sum(m.is_video for m in server.received.media) >= 5


async def test_nobody_listening_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(
        PublisherError,
        match=rf"cannot reach the RTMP server at 127.0.0.1:{port} \(connection refused\)",
    ):
        await publish_synthetic(f"rtmp://127.0.0.1:{port}/live/{KEY}", config=SMALL)
