"""The asyncio transport (ingest/rtmp/server.py) on real sockets: its watchdog and SO_REUSEPORT.

The watchdog replaced a timeout scope per read: one timer per connection that looks at
the time of the last byte when it fires. These tests pin what it must still do — close
a publisher that goes silent after ``idle_s``, keep one that trickles data alive past
it — and that two servers can share a port only when both ask for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from common.nats_server import free_port
from ingest.packager.flvfile import FlvTag
from ingest.rtmp.events import ConnectRequested, Event, PublishRequested
from ingest.rtmp.server import CloseKind, RTMPLink, RTMPServer, Timeouts
from tests.bench.rtmp_publish import RtmpPublisher, chunk_tags
from tests.unit.rtmp_peer import AAC_LC_44K_STEREO, audio_tag

pytestmark = pytest.mark.integration

IDLE_S = 1.0


@dataclass
class Accepting:
    """Accepts every connect and publish; records how each connection ended."""

    ended: list[tuple[CloseKind, str, float]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, link: RTMPLink, event: Event) -> None:
        if isinstance(event, ConnectRequested):
            link.send(link.conn.accept_connect())
        elif isinstance(event, PublishRequested):
            link.send(link.conn.accept_publish())

    async def closed(self, link: RTMPLink, kind: CloseKind, detail: str) -> None:
        self.ended.append((kind, detail, time.monotonic()))
        self.changed.set()

    async def next_end(self, timeout_s: float = 10.0) -> tuple[CloseKind, str, float]:
        async with asyncio.timeout(timeout_s):
            while not self.ended:
                self.changed.clear()
                await self.changed.wait()
        return self.ended.pop(0)


@contextlib.asynccontextmanager
async def serving(
    handler: Accepting, *, port: int = 0, reuse_port: bool = False
) -> AsyncIterator[RTMPServer]:
    server = RTMPServer(
        lambda _link: handler,
        host="127.0.0.1",
        port=port,
        timeouts=Timeouts(handshake_s=5.0, setup_s=5.0, idle_s=IDLE_S, write_s=5.0),
        reuse_port=reuse_port,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_publisher_that_goes_silent_is_closed_after_idle_s() -> None:
    handler = Accepting()
    async with serving(handler) as server:
        publisher = await RtmpPublisher.open("127.0.0.1", server.port, "live", "key")
        silent_since = time.monotonic()
        kind, detail, at = await handler.next_end()
        await publisher.close()
    assert kind is CloseKind.TIMEOUT
    assert "no data" in detail
    assert IDLE_S - 0.05 <= at - silent_since < IDLE_S + 1.0


async def test_a_publisher_that_keeps_sending_outlives_idle_s() -> None:
    handler = Accepting()
    async with serving(handler) as server:
        publisher = await RtmpPublisher.open("127.0.0.1", server.port, "live", "key")
        # Audio every IDLE_S / 4 for 3 x IDLE_S: every gap is well inside the limit.
        frames = [FlvTag(8, 0, audio_tag(0, AAC_LC_44K_STEREO))] + [
            FlvTag(8, 23 * i, audio_tag(1, bytes(64))) for i in range(1, 13)
        ]
        for data in chunk_tags(frames):
            publisher.write(data)
            await publisher.drain()
            await asyncio.sleep(IDLE_S / 4)
        assert handler.ended == []
        await publisher.close()
        kind, _detail, _at = await handler.next_end()
    assert kind is CloseKind.PEER


async def test_two_servers_share_a_port_only_with_reuse_port() -> None:
    port = free_port()
    first, second = Accepting(), Accepting()
    async with (
        serving(first, port=port, reuse_port=True),
        serving(second, port=port, reuse_port=True),
    ):
        # Both accept: the kernel spreads new connections over the two listeners.
        publishers = [await RtmpPublisher.open("127.0.0.1", port, "live", "k") for _ in range(16)]
        for publisher in publishers:
            await publisher.close()
        for handler in (first, second):
            async with asyncio.timeout(10):
                while len(handler.ended) < 1:
                    handler.changed.clear()
                    await handler.changed.wait()
    async with serving(Accepting(), port=port):
        with pytest.raises(OSError, match="in use"):
            async with serving(Accepting(), port=port):
                pass
