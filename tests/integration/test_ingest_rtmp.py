"""The RTMP ingest against real publishers (ffmpeg CLI, PyAV), real NATS, a real database.

Every test runs an :class:`IngestServer` in-process on a free port, wired to a
migrated SQLite database and the test's NATS server through ``ingest.bus`` — the same
broker ``python -m ingest`` starts — with a :class:`RecordingSink` standing in for the
packager. Stream keys reach ingest the way they do in production: a
``channel.key_rotated`` event through the ``ingest-keys`` durable consumer.

Tests wait on events with timeouts, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext

from common.db import create_engine, migrate, session_factory
from common.nats_server import free_port
from common.settings import Settings
from events.catalog import ChannelKeyRotated, StreamStopRequested
from events.publisher import EventPublisher
from ingest import bus
from ingest.auth import hash_key
from ingest.keys import Channel, KeyStore, PublisherLeases
from ingest.media import MediaSink, RecordingSink
from ingest.rtmp.handshake import HANDSHAKE_SIZE
from ingest.rtmp.server import Timeouts
from ingest.server import IngestConfig, IngestServer
from tests.unit.rtmp_peer import Publisher, c2_for, digest_c0c1

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
FFMPEG = "ffmpeg"


# --- fixtures --------------------------------------------------------------------------


@dataclass
class Sinks:
    """The packager stand-in: a RecordingSink per publish, in order."""

    made: list[RecordingSink] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, stream_id: str, session_id: str, user_id: str) -> MediaSink:
        sink = RecordingSink(stream_id, session_id, user_id)
        self.made.append(sink)
        self.changed.set()
        return sink

    async def next(self, index: int = 0, timeout_s: float = DEADLINE_S) -> RecordingSink:
        async with asyncio.timeout(timeout_s):
            while len(self.made) <= index:
                self.changed.clear()
                await self.changed.wait()
        return self.made[index]


@dataclass
class Ingest:
    server: IngestServer
    sinks: Sinks
    keys: KeyStore
    leases: PublisherLeases
    publisher: EventPublisher
    nats: Client
    runtime: bus.IngestRuntime

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.server.port}/live/{key}"

    async def add_channel(self, stream_id: str | None = None) -> tuple[str, str]:
        """A new channel key, told to ingest through NATS; returns (stream_id, key)."""
        stream_id = stream_id or secrets.token_urlsafe(12)
        key = secrets.token_urlsafe(32)
        event = ChannelKeyRotated(
            stream_id=stream_id, user_id=f"user-{stream_id}", key_hash=hash_key(key)
        )
        handled = asyncio.Event()

        def listener(seen: ChannelKeyRotated) -> None:
            if seen.event_id == event.event_id:
                handled.set()

        self.runtime.key_listeners.append(listener)
        try:
            await self.publisher.publish(event)
            await asyncio.wait_for(handled.wait(), DEADLINE_S)
        finally:
            self.runtime.key_listeners.remove(listener)
        assert await self.keys.lookup(hash_key(key)) == Channel(stream_id, f"user-{stream_id}")
        return stream_id, key


TEST_CONFIG = IngestConfig(
    host="127.0.0.1",
    port=0,
    timeouts=Timeouts(handshake_s=2.0, setup_s=4.0, idle_s=4.0, write_s=4.0),
    bad_key_delay_s=0.0,
    bad_key_limit=3,
    stop_cooldown_s=30.0,
    stats_interval_s=1.0,
    lease_ttl_s=5.0,
)


@pytest.fixture
async def database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}"
    await migrate(url)
    return url


@pytest.fixture
async def ingest_factory(
    settings: Settings,
    event_streams: JetStreamContext,
    nats_client: Client,
    database: str,
) -> AsyncIterator[Callable[..., Awaitable[Ingest]]]:
    engine = create_engine(database)
    sessions = session_factory(engine)
    keys = KeyStore(sessions)
    broker: NatsBroker = bus.create_broker(settings)
    runtime = bus.IngestRuntime(keys=keys)
    broker.context.set_global(bus.CONTEXT_KEY, runtime)
    await broker.start()
    publisher = EventPublisher(broker, producer="ingest-test")
    servers: list[IngestServer] = []

    async def make(**overrides: Any) -> Ingest:
        sinks = Sinks()
        leases = PublisherLeases(sessions, instance=f"test-{len(servers)}")
        server = IngestServer(
            replace(TEST_CONFIG, **overrides),
            keys=keys,
            leases=leases,
            sink_factory=sinks,
            stats=publisher,
        )
        await server.start()
        servers.append(server)
        runtime.server = server
        return Ingest(server, sinks, keys, leases, publisher, nats_client, runtime)

    try:
        yield make
    finally:
        for server in servers:
            await server.stop()
        await broker.stop()
        await engine.dispose()


@pytest.fixture
async def ingest(ingest_factory: Callable[..., Awaitable[Ingest]]) -> Ingest:
    return await ingest_factory()


# --- publishers -------------------------------------------------------------------------


@dataclass
class Run:
    process: asyncio.subprocess.Process
    stderr: bytes = b""

    async def finish(self, timeout_s: float = DEADLINE_S) -> int:
        async with asyncio.timeout(timeout_s):
            _, self.stderr = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


async def ffmpeg(
    url: str,
    *,
    seconds: float = 2.0,
    realtime: bool = False,
    video: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"),
    audio: tuple[str, ...] = ("-c:a", "aac"),
    size: str = "320x240",
    bitrate: str | None = None,
) -> Run:
    """The issue's publisher: ffmpeg's testsrc + anullsrc, H.264 + AAC, over RTMP."""
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        args.append("-re")
    args += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=30"]
    args += ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", str(seconds)]
    args += [*video, "-g", "30", "-pix_fmt", "yuv420p"]
    if bitrate:
        args += ["-b:v", bitrate, "-minrate", bitrate, "-maxrate", bitrate, "-bufsize", bitrate]
    args += [*audio, "-f", "flv", url]
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    return Run(process)


def publish_with_pyav(url: str, *, frames: int = 60) -> None:
    """A PyAV publisher: libx264 + AAC into ``av.open(url, mode="w", format="flv")``."""
    import av

    container = av.open(url, mode="w", format="flv")
    try:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "stereo"
        samples = 0
        for index in range(frames):
            frame = av.VideoFrame(160, 120, "yuv420p")
            for video_plane in frame.planes:
                video_plane.update(bytes([index * 4 % 256]) * video_plane.buffer_size)
            frame.pts = index
            container.mux(video.encode(frame))
            while samples * 30 < (index + 1) * 44100:
                chunk = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                chunk.sample_rate = 44100
                for audio_plane in chunk.planes:
                    audio_plane.update(bytes(audio_plane.buffer_size))
                chunk.pts = samples
                samples += 1024
                container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    finally:
        container.close()


def media_calls(sink: RecordingSink, kind: str) -> list[tuple[Any, ...]]:
    return sink.of(kind)


def assert_in_order(sink: RecordingSink) -> None:
    """Configs before frames, timestamps never decreasing per track, close last."""
    kinds = [call[0] for call in sink.calls]
    assert kinds.index("video_config") < kinds.index("video")
    assert kinds.index("audio_config") < kinds.index("audio")
    assert kinds[-1] == "close"
    for kind in ("video", "audio"):
        stamps = [call[1] for call in sink.of(kind)]
        assert stamps == sorted(stamps), f"{kind} timestamps go back"


# --- the tests ------------------------------------------------------------------------------


async def test_the_right_key_publishes_and_media_arrives_in_order(ingest: Ingest) -> None:
    stream_id, key = await ingest.add_channel()
    stats = await ingest.nats.subscribe(f"stats.ingest.{stream_id}")
    run = await ffmpeg(ingest.url(key), seconds=3.0, realtime=True)
    sink = await ingest.sinks.next()
    assert (sink.stream_id, sink.user_id) == (stream_id, f"user-{stream_id}")
    # stats.ingest every interval while live: bitrate over the window, fps from video.
    message = await stats.next_msg(timeout=DEADLINE_S)
    first = json.loads(message.data)
    assert first["session_id"] == sink.session_id
    assert first["bitrate_kbps"] > 0
    assert 0 < first["fps"] <= 40
    assert await run.finish() == 0, run.stderr.decode()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    assert sink.closed_with == "publisher_left"
    assert_in_order(sink)
    assert sink.of("metadata")[0][1]["width"] == 320.0
    videos = sink.of("video")
    assert len(videos) >= 85  # 3 s at 30 fps
    assert videos[0][3] is True  # starts on a keyframe
    assert stream_id not in ingest.server.live
    assert await ingest.leases.claim(stream_id, "after", 5.0)  # the lease was released
    await stats.unsubscribe()


async def test_silent_audio_reaches_six_seconds(ingest: Ingest) -> None:
    """pyrtmp (a): constant-size silent AAC on type-3 headers; its audio ended at 4.1 s."""
    _, key = await ingest.add_channel()
    run = await ffmpeg(ingest.url(key), seconds=6.0, size="160x120")
    assert await run.finish() == 0, run.stderr.decode()
    sink = await ingest.sinks.next()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    audio = [call[1] for call in sink.of("audio")]
    assert audio[-1] >= 5_900, f"audio ends at {audio[-1]} ms"
    assert len(audio) >= 6 * 44_100 // 1024 - 2  # every AAC frame of 6 s arrived
    assert [call[1] for call in sink.of("video")][-1] >= 5_900


async def test_a_wrong_key_is_refused_and_nothing_is_published(ingest: Ingest) -> None:
    stream_id, key = await ingest.add_channel()
    stats = await ingest.nats.subscribe("stats.ingest.>")
    run = await ffmpeg(ingest.url(secrets.token_urlsafe(32)))
    assert await run.finish() != 0
    assert b"invalid stream key" in run.stderr
    run = await ffmpeg(ingest.url("..%2e%2e"))
    assert await run.finish() != 0
    assert b"invalid stream key" in run.stderr
    assert ingest.sinks.made == []
    assert ingest.server.live == {}
    with pytest.raises(TimeoutError):
        await stats.next_msg(timeout=TEST_CONFIG.stats_interval_s * 1.5)
    # A third bad key locks the address out: even the right key waits now.
    run = await ffmpeg(ingest.url("wrong"))
    assert await run.finish() != 0
    run = await ffmpeg(ingest.url(key))
    assert await run.finish() != 0
    assert b"too many invalid stream keys from your address" in run.stderr
    assert ingest.sinks.made == []
    del stream_id
    await stats.unsubscribe()


async def test_a_second_publisher_on_the_channel_is_refused(ingest: Ingest) -> None:
    _, key = await ingest.add_channel()
    first = await ffmpeg(ingest.url(key), seconds=5.0, realtime=True)
    try:
        sink = await ingest.sinks.next()
        await sink.wait_for(lambda s: len(s.of("video")) > 10, DEADLINE_S)
        second = await ffmpeg(ingest.url(key), seconds=5.0, realtime=True)
        assert await second.finish(timeout_s=15) != 0
        assert b"already publishing" in second.stderr
        assert len(ingest.sinks.made) == 1
        assert sink.closed_with is None  # the first one goes on
        assert await first.finish() == 0, first.stderr.decode()
    finally:
        first.kill()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    assert sink.closed_with == "publisher_left"


async def test_the_lease_keeps_one_publisher_across_processes(
    ingest_factory: Callable[..., Awaitable[Ingest]],
) -> None:
    one = await ingest_factory()
    other = await ingest_factory()  # a second ingest process on the same database
    _, key = await one.add_channel()
    first = await ffmpeg(one.url(key), seconds=4.0, realtime=True)
    try:
        await (await one.sinks.next()).wait_for(lambda s: bool(s.of("video")), DEADLINE_S)
        second = await ffmpeg(other.url(key))
        assert await second.finish(timeout_s=15) != 0
        assert b"already publishing" in second.stderr
        assert other.sinks.made == []
    finally:
        first.kill()


async def test_stop_requested_disconnects_the_publisher(ingest: Ingest) -> None:
    stream_id, key = await ingest.add_channel()
    run = await ffmpeg(ingest.url(key), seconds=30.0, realtime=True)
    try:
        sink = await ingest.sinks.next()
        await sink.wait_for(lambda s: len(s.of("video")) > 5, DEADLINE_S)
        started = time.monotonic()
        await ingest.publisher.publish(
            StreamStopRequested(stream_id=stream_id, user_id="owner", reason="owner")
        )
        assert await run.finish(timeout_s=15) != 0
        assert time.monotonic() - started < 10
        await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
        assert sink.closed_with == "stop_requested"
        # OBS would reconnect at once: the channel cools down first.
        again = await ffmpeg(ingest.url(key))
        assert await again.finish() != 0
        assert b"this stream was stopped" in again.stderr
    finally:
        run.kill()


async def test_a_pyav_publisher(ingest: Ingest) -> None:
    _, key = await ingest.add_channel()
    # In its own process: PyAV holds the GIL while libavformat waits for the server's
    # handshake, which would stall this event loop (and the server in it).
    code = (
        "from tests.integration.test_ingest_rtmp import publish_with_pyav;"
        f"publish_with_pyav({ingest.url(key)!r})"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(DEADLINE_S):
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    sink = await ingest.sinks.next()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    assert_in_order(sink)
    assert len(sink.of("video")) == 60


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        (("-c:v", "flv1"), b"unsupported video codec Sorenson H.263 (FLV codec id 2)"),
        (("-c:a", "libmp3lame"), b"unsupported audio codec MP3 (FLV sound format 2)"),
    ],
)
async def test_other_codecs_are_refused_with_a_reason(
    ingest: Ingest, codec: tuple[str, str], message: bytes
) -> None:
    _, key = await ingest.add_channel()
    kwargs: dict[str, Any] = {"video": codec} if codec[0] == "-c:v" else {"audio": codec}
    run = await ffmpeg(ingest.url(key), **kwargs)
    assert await run.finish() != 0
    assert message in run.stderr, run.stderr.decode()
    sink = await ingest.sinks.next()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    assert sink.closed_with == "error"


async def _closed_within(reader: asyncio.StreamReader, timeout_s: float) -> float:
    """Seconds until the server closes the connection (EOF)."""
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def test_a_slowloris_handshake_is_cut_off(ingest: Ingest) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.server.port)

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in digest_c0c1():
                writer.write(bytes((byte,)))
                await writer.drain()
                await asyncio.sleep(0.2)

    trickling = asyncio.create_task(trickle())
    elapsed = await _closed_within(reader, 10)
    trickling.cancel()
    writer.close()
    assert 1.5 < elapsed < 4  # handshake_s = 2


async def test_a_connection_that_never_publishes_is_closed(ingest: Ingest) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.server.port)
    writer.write(digest_c0c1())
    s012 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
    writer.write(c2_for(s012) + Publisher().connect())
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        await _closed_within(reader, 10)
    writer.close()
    assert 3 < time.monotonic() - started < 7  # setup_s = 4, idle_s = 4


async def test_bad_input_closes_only_that_connection(ingest: Ingest) -> None:
    _, key = await ingest.add_channel()
    run = await ffmpeg(ingest.url(key), seconds=4.0, realtime=True)
    sink = await ingest.sinks.next()
    await sink.wait_for(lambda s: bool(s.of("video")), DEADLINE_S)
    client = Publisher()
    handshake_then = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        None,  # chunk size 0
        None,  # a 16 MiB-1 header with no body
    ]
    for index, raw in enumerate(handshake_then):
        reader, writer = await asyncio.open_connection("127.0.0.1", ingest.server.port)
        if raw is not None:
            writer.write(raw)
        else:
            writer.write(digest_c0c1())
            s012 = await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
            writer.write(c2_for(s012) + client.connect())
            if index == 1:
                writer.write(client.set_chunk_size(0, raw=b"\x00\x00\x00\x00"))
            else:
                header = b"\x06" + b"\x00\x00\x00" + b"\xff\xff\xff" + b"\x09" + b"\x01\x00\x00\x00"
                writer.write(header)
        with contextlib.suppress(ConnectionError):
            assert await _closed_within(reader, 5) < 2
        writer.close()
    assert await run.finish() == 0, run.stderr.decode()
    await sink.wait_for(lambda s: s.closed_with is not None, DEADLINE_S)
    assert sink.closed_with == "publisher_left"


async def test_python_m_ingest_runs_and_stops(
    settings: Settings, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(
        os.environ,
        VIDEOPICK_NATS_URL=settings.resolved_nats_url,
        VIDEOPICK_DATA_DIR=str(tmp_path / "data"),
        VIDEOPICK_RTMP_PORT=str(port),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", "--migrate", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    assert process.returncode is None
                    await asyncio.sleep(0.1)
                    continue
                writer.close()
                break
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE_S):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"ingest ready" in stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
