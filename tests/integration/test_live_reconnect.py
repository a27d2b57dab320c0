"""A live broadcast end to end with real publishers, and a publisher that drops.

The RTMP ingest (``IngestServer``) with the real packaging (``create_packaging``) on a
real nats-server and a folder store; the gateway's live delivery (``start_live``: its
bus feed and routes) serves the playlist. ffmpeg publishes, is killed mid-stream
(no unpublish: a dropped connection), and a second ffmpeg with the same key continues
the broadcast within the reconnect window. Playlists are checked with the ``m3u8``
package during and after the stream, and every segment and part they name decodes
with PyAV; the recording covers both halves and is one video with the broadcast's
title and description. A publisher that does not come back ends the broadcast after
the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
from faststream.nats import NatsBroker
from litestar import Litestar
from litestar.datastructures import State
from nats.aio.client import Client
from nats.js import JetStreamContext
from PIL import Image

from common.db import create_engine, migrate, session_factory
from common.settings import Settings, load_settings
from common.store.local import LocalStore
from events.catalog import (
    ChannelKeyRotated,
    ChannelUpdated,
    StreamEnded,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    StreamThumbnail,
    decode_event,
)
from events.envelope import Event
from events.publisher import EventPublisher
from events.replay import iter_stored
from events.streams import ACCOUNTS, LIVE_MEDIA, STREAMS
from gateway.errors import exception_handlers
from gateway.live import LiveService, routers, start_live, stop_live
from gateway.projections.reducer import CatalogState, apply_event
from ingest import bus
from ingest.auth import hash_key
from ingest.keys import KeyStore, PublisherLeases
from ingest.packager import LivePackaging, create_packaging
from ingest.rtmp.server import Timeouts
from ingest.server import IngestConfig, IngestServer
from tests.integration.llhls_checks import (
    check_media,
    check_playlist,
    check_recording_playlist,
    decoded_video_frames,
)

pytestmark = pytest.mark.integration

DEADLINE_S = 40.0
# The reconnect window of tests whose last publish ends "cleanly": long enough for a
# reconnect to land, short enough that an end which came as a reset still ends the
# broadcast within DEADLINE_S. Under load ffmpeg can close with our acknowledgements
# unread: its kernel then resets the connection and drops what it had not sent yet,
# the unpublish included, so the end is a drop (as a real encoder's would be).
WINDOW_S = 20.0
FRAME_S = 1 / 30
E = TypeVar("E", bound=Event)


@dataclass
class Live:
    server: IngestServer
    packaging: LivePackaging
    gateway: LiveService
    publisher: EventPublisher
    nats: Client
    js: JetStreamContext

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.server.port}/live/{key}"

    def http(self) -> httpx.AsyncClient:
        app = Litestar(
            route_handlers=routers,
            exception_handlers=exception_handlers(),
            state=State({"live": self.gateway}),
        )
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cast(Any, app)), base_url="http://gw"
        )

    async def stored(self, kind: type[E], stream: str, stream_id: str) -> list[E]:
        subject = f"{kind.event_type()}.{stream_id}"
        events = [decode_event(m.data) async for m in iter_stored(self.js, subject, stream=stream)]
        return [e for e in events if isinstance(e, kind)]


@pytest.fixture
def live_settings(settings: Settings) -> Callable[[float], Settings]:
    def make(window_s: float) -> Settings:
        return load_settings(
            {
                "VIDEOPICK_NATS_URL": settings.nats_url,
                "VIDEOPICK_DATA_DIR": str(settings.data_dir),
                "VIDEOPICK_EVENTS_MAX_BYTES": str(64 * 1024**2),
                "VIDEOPICK_LIVE_RECONNECT_WINDOW_S": str(window_s),
                "VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S": "2",
            }
        )

    return make


@pytest.fixture
async def make_live(
    live_settings: Callable[[float], Settings],
    event_streams: JetStreamContext,
    nats_client: Client,
    local_store: LocalStore,
    tmp_path: Path,
) -> AsyncIterator[Callable[[float], Any]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}"
    await migrate(url)
    engine = create_engine(url)
    made: list[tuple[Live, NatsBroker]] = []

    async def make(window_s: float) -> Live:
        settings = live_settings(window_s)
        keys = KeyStore(session_factory(engine))
        broker = bus.create_broker(settings)
        broker.context.set_global(bus.CONTEXT_KEY, bus.IngestRuntime(keys=keys))
        await broker.start()
        packaging = create_packaging(settings, broker, local_store)
        publisher = EventPublisher(broker, producer="ingest")
        server = IngestServer(
            IngestConfig(
                port=0,
                timeouts=Timeouts(handshake_s=2.0, setup_s=4.0, idle_s=4.0, write_s=4.0),
                stats_interval_s=1.0,
            ),
            keys=keys,
            leases=PublisherLeases(session_factory(engine), instance="test"),
            sink_factory=packaging.create_session_sink,
            stats=publisher,
        )
        await server.start()
        gateway = await start_live(settings, local_store)
        live = Live(server, packaging, gateway, publisher, nats_client, event_streams)
        made.append((live, broker))
        return live

    try:
        yield make
    finally:
        for live, broker in made:
            await live.server.stop()
            await live.packaging.aclose()
            await stop_live(live.gateway)
            await broker.stop()
        await engine.dispose()


async def add_channel(live: Live) -> tuple[str, str]:
    """A channel whose key ingest knows, with broadcast metadata set."""
    stream_id, key = secrets.token_hex(6), secrets.token_urlsafe(32)
    user_id = f"user-{stream_id}"
    await live.publisher.publish(
        ChannelKeyRotated(stream_id=stream_id, user_id=user_id, key_hash=hash_key(key))
    )
    await live.publisher.publish(
        ChannelUpdated(
            stream_id=stream_id, user_id=user_id, title="Two halves", description="dropped once"
        )
    )
    await until(lambda: live.server.keys.lookup(hash_key(key)), "the key reached ingest")
    return stream_id, key


async def until(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def ffmpeg(url: str, seconds: float) -> asyncio.subprocess.Process:
    """Debian's ffmpeg: testsrc 30 fps, 1 s GOP (x264 zerolatency) + AAC, in real time."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re"]
    args += ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"]
    args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds)]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30"]
    args += ["-sc_threshold", "0"]  # no scene-cut keyframes: the GOP is exactly 1 s
    args += ["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv", url]
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def stop(process: asyncio.subprocess.Process, *, kill: bool) -> None:
    if kill:
        with contextlib.suppress(ProcessLookupError):
            process.kill()  # SIGKILL: no unpublish, the TCP connection just closes
    async with asyncio.timeout(DEADLINE_S):
        _, stderr = await process.communicate()
    if not kill:
        assert process.returncode == 0, stderr.decode()


def segments_at_gateway(live: Live, stream_id: str) -> int:
    playlist = live.gateway.state.playlist(stream_id)
    return 0 if playlist is None else len(playlist.segments)


def live_fetcher(http: httpx.AsyncClient, stream_id: str) -> Callable[[str], Awaitable[bytes]]:
    """Fetches a URI under the stream's ``/live/`` path, which must answer 200."""

    async def fetch(uri: str) -> bytes:
        response = await http.get(f"/live/{stream_id}/{uri}")
        assert response.status_code == 200, uri
        return response.content

    return fetch


async def check_ended_broadcast(
    live: Live,
    stream_id: str,
    broadcast_id: str,
    segments: list[StreamSegment],
    ended: StreamEnded,
    recorded: StreamRecorded,
) -> int:
    """A broadcast with one reconnect, once ended, through ``live``'s gateway: the live
    playlist (ENDLIST, one discontinuity, durations adding up, every part and segment
    decoding) and the recording's VOD playlist over the same segments. The frame count."""
    await until(
        lambda: (p := live.gateway.state.playlist(stream_id)) is not None and p.ended,
        "stream.ended at the gateway",
    )
    async with live.http() as http:
        fetch = live_fetcher(http, stream_id)
        response = await http.get(f"/live/{stream_id}/index.m3u8")
        after = check_playlist(response.text, live=False)
        assert after.discontinuities == 1
        assert after.segments_s == pytest.approx(ended.duration_s, abs=FRAME_S)
        frames = await check_media(after, after.playlist.segment_map[0].uri, fetch)

        response = await http.get(f"/live/{stream_id}/{broadcast_id}/recording.m3u8")
        assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        vod = check_recording_playlist(response.text)
        assert vod.discontinuities == 1
        assert len(vod.segment_uris) == len(segments)
        assert vod.segments_s == pytest.approx(recorded.duration_s, abs=FRAME_S)

        async def fetch_vod(uri: str) -> bytes:
            return await fetch(f"{broadcast_id}/{uri}")

        assert await check_media(vod, "init.mp4", fetch_vod) == frames
    return frames


async def test_a_dropped_publisher_that_returns_continues_the_broadcast(
    make_live: Callable[[float], Any],
) -> None:
    live: Live = await make_live(WINDOW_S)
    stream_id, key = await add_channel(live)
    stats = await live.nats.subscribe(f"stats.ingest.{stream_id}")

    first = await ffmpeg(live.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(live, stream_id) >= 3, "3 segments live")
        # During the stream: the playlist parses, and what it names plays.
        async with live.http() as http:
            fetch = live_fetcher(http, stream_id)
            response = await http.get(f"/live/{stream_id}/index.m3u8")
            assert response.status_code == 200
            during = check_playlist(response.text, live=True)
            assert during.part_uris, "no parts listed while live"
            init_uri = during.playlist.segment_map[0].uri
            await check_media(during, init_uri, fetch)
            thumbnail = await until(
                lambda: live.stored(StreamThumbnail, LIVE_MEDIA.name, stream_id), "a thumbnail"
            )
            picture = await http.get(f"/live/{stream_id}/thumbnail.jpg")
            assert picture.status_code == 200
            assert picture.headers["content-type"] == "image/jpeg"
            assert picture.headers["cache-control"] == "public, max-age=5"
            assert Image.open(io.BytesIO(picture.content)).size == (320, 240)
            assert thumbnail[0].width == 320
    finally:
        await stop(first, kill=True)

    session = live.gateway.state.playlist(stream_id)
    assert session is not None
    broadcast_id = session.session_id
    second = await ffmpeg(live.url(key), seconds=4)
    await stop(second, kill=False)  # a clean unpublish ends it at once (a reset: WINDOW_S)
    await asyncio.wait_for(live.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)

    started = await live.stored(StreamStarted, STREAMS.name, stream_id)
    ended = await live.stored(StreamEnded, STREAMS.name, stream_id)
    recorded = await until(
        lambda: live.stored(StreamRecorded, STREAMS.name, stream_id), "stream.recorded"
    )
    assert [e.session_id for e in started + ended + recorded] == [broadcast_id] * 3
    assert ended[0].reason == "publisher_left"
    segments = await live.stored(StreamSegment, LIVE_MEDIA.name, stream_id)
    assert [s.sequence for s in segments] == list(range(len(segments)))
    resumed = [s for s in segments if s.discontinuity]
    assert len(resumed) == 1
    assert sum(s.duration_s for s in segments) == pytest.approx(ended[0].duration_s, abs=FRAME_S)

    # Ingest stats: both connections report as the one broadcast, with the 1 s GOP.
    samples = []
    with contextlib.suppress(TimeoutError):
        while True:
            samples.append(json.loads((await stats.next_msg(timeout=0.05)).data))
    assert {s["session_id"] for s in samples} == {broadcast_id}
    assert [s["keyframe_interval_s"] for s in samples if s["keyframe_interval_s"]]
    assert all(s["keyframe_interval_s"] in (0.0, pytest.approx(1.0, abs=0.05)) for s in samples)

    # After the stream: ENDLIST, one discontinuity, durations add up, everything plays.
    frames = await check_ended_broadcast(
        live, stream_id, broadcast_id, segments, ended[0], recorded[0]
    )
    assert recorded[0].playlist_key == f"live/{stream_id}/{broadcast_id}/recording.m3u8"

    # The recording: both halves, one file, one video with the broadcast's metadata.
    data = await live.packaging.store.read(recorded[0].object_key)
    assert decoded_video_frames(b"", data) == frames
    assert recorded[0].duration_s == pytest.approx(ended[0].duration_s, abs=FRAME_S)
    assert recorded[0].duration_s > 3.5  # longer than the second half alone
    catalog = CatalogState()
    for stream in (ACCOUNTS.name, STREAMS.name):
        async for message in iter_stored(live.js, f"*.*.{stream_id}", stream=stream):
            apply_event(catalog, decode_event(message.data))
    (video,) = catalog.videos.values()
    assert (video.title, video.description) == ("Two halves", "dropped once")
    assert video.session_id == broadcast_id


async def test_a_publisher_that_does_not_return_in_time_ends_the_broadcast(
    make_live: Callable[[float], Any],
) -> None:
    live: Live = await make_live(2.0)
    stream_id, key = await add_channel(live)
    first = await ffmpeg(live.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(live, stream_id) >= 2, "2 segments live")
    finally:
        await stop(first, kill=True)
    dropped_at = time.monotonic()
    await asyncio.wait_for(live.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    assert time.monotonic() - dropped_at >= 1.5  # it waited for the publisher first
    (ended,) = await live.stored(StreamEnded, STREAMS.name, stream_id)
    assert ended.reason == "publisher_left"
    await until(lambda: live.stored(StreamRecorded, STREAMS.name, stream_id), "stream.recorded")

    # A publish after the window is a new broadcast.
    second = await ffmpeg(live.url(key), seconds=3)
    await stop(second, kill=False)
    await asyncio.wait_for(live.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    started = await live.stored(StreamStarted, STREAMS.name, stream_id)
    assert len({e.session_id for e in started}) == 2


async def test_a_reconnect_replaces_a_silent_half_open_connection(
    make_live: Callable[[float], Any],
) -> None:
    """The encoder's network dropped but our end never saw it: its reconnect replaces
    the silent connection (as a timeout) and continues the broadcast."""
    live: Live = await make_live(WINDOW_S)
    stream_id, key = await add_channel(live)
    frozen = await ffmpeg(live.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(live, stream_id) >= 2, "2 segments live")
        frozen.send_signal(signal.SIGSTOP)  # the socket stays open, nothing more arrives
        holder = live.server.live[stream_id]
        await until(lambda: holder.idle_s() >= live.server.config.takeover_idle_s, "silence")
        second = await ffmpeg(live.url(key), seconds=3)
        await stop(second, kill=False)
        await asyncio.wait_for(live.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            frozen.kill()
        await frozen.wait()
    started = await live.stored(StreamStarted, STREAMS.name, stream_id)
    ended = await live.stored(StreamEnded, STREAMS.name, stream_id)
    assert len(started) == len(ended) == 1
    assert ended[0].session_id == started[0].session_id
    segments = await live.stored(StreamSegment, LIVE_MEDIA.name, stream_id)
    assert [s.sequence for s in segments] == list(range(len(segments)))
    assert len([s for s in segments if s.discontinuity]) == 1
