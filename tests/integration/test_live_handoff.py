"""A reconnect that lands on ANOTHER ingest process continues the broadcast (issue #4).

Two ingest "processes" in one test process — two ``IngestServer`` + ``create_packaging``
pairs on their own ports, each with its own broker connection, sharing one real
nats-server (JetStream KV ``ingest_broadcasts``), one database and one folder store,
as replicas share them — and, for the crash cases, two real ``python -m ingest``
processes. ffmpeg publishes to A and is killed (a dropped connection) or frozen
(a half-open one); a second ffmpeg publishes to B. One broadcast comes out: one
session id, one ``stream.started`` / ``stream.ended`` / ``stream.recorded``, media
sequence numbers carrying on with one EXT-X-DISCONTINUITY, every segment decoding,
a recording covering both halves with the channel's title.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from common.db import create_engine, migrate, session_factory
from common.settings import Settings, load_settings
from common.store.local import LocalStore
from events.broker import create_broker
from events.catalog import (
    ChannelKeyRotated,
    ChannelUpdated,
    StreamEnded,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    decode_event,
)
from events.envelope import Event
from events.publisher import EventPublisher
from events.replay import iter_stored
from events.streams import LIVE_MEDIA, STREAMS
from gateway.live import start_live, stop_live
from ingest import bus
from ingest.auth import hash_key
from ingest.keys import KeyStore, PublisherLeases
from ingest.packager import create_packaging
from ingest.packager.handoff import (
    BUCKET,
    CHUNK_SEGMENTS,
    ORPHAN_GRACE_S,
    OWNER_GONE_S,
    BroadcastHandoff,
    Shared,
)
from ingest.rtmp.server import Timeouts
from ingest.server import IngestConfig, IngestServer
from ingest.takeover import TakeoverLink
from tests.integration.live_stack import ingest_caught_up, ingest_process
from tests.integration.llhls_checks import (
    check_recording_playlist,
    decoded_video_frames,
)
from tests.integration.test_live_reconnect import (
    DEADLINE_S,
    FRAME_S,
    WINDOW_S,
    Live,
    add_channel,
    check_ended_broadcast,
    ffmpeg,
    segments_at_gateway,
    stop,
    until,
)

pytestmark = pytest.mark.integration

E = TypeVar("E", bound=Event)


async def stored(js: JetStreamContext, kind: type[E], stream: str, stream_id: str) -> list[E]:
    subject = f"{kind.event_type()}.{stream_id}"
    events = [decode_event(m.data) async for m in iter_stored(js, subject, stream=stream)]
    return [e for e in events if isinstance(e, kind)]


async def shared_record(js: JetStreamContext, stream_id: str) -> Shared | None:
    try:
        entry = await (await js.key_value(BUCKET)).get(stream_id)
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    return msgspec.json.decode(entry.value, type=Shared) if entry.value else None


async def lingering(js: JetStreamContext, stream_id: str) -> bool:
    record = await shared_record(js, stream_id)
    return record is not None and record.state == "lingering"


@pytest.fixture
async def make_pair(
    settings: Settings,
    event_streams: JetStreamContext,
    nats_client: Client,
    local_store: LocalStore,
    tmp_path: Path,
) -> AsyncIterator[Callable[[float], Awaitable[tuple[Live, Live]]]]:
    """Two ingests (A, B) as two processes would be, and one gateway's live delivery."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}"
    await migrate(url)
    engine = create_engine(url)
    made: list[tuple[Live, NatsBroker]] = []

    async def make(window_s: float) -> tuple[Live, Live]:
        live_settings = load_settings(
            {
                "VIDEOPICK_NATS_URL": settings.nats_url,
                "VIDEOPICK_DATA_DIR": str(settings.data_dir),
                "VIDEOPICK_EVENTS_MAX_BYTES": str(64 * 1024**2),
                "VIDEOPICK_LIVE_RECONNECT_WINDOW_S": str(window_s),
                "VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S": "0",
            }
        )
        gateway = await start_live(live_settings, local_store)
        pair: list[Live] = []
        for name in ("a", "b"):
            keys = KeyStore(session_factory(engine))
            broker = bus.create_broker(live_settings)
            runtime = bus.IngestRuntime(keys=keys)
            broker.context.set_global(bus.CONTEXT_KEY, runtime)
            await broker.start()
            packaging = create_packaging(live_settings, broker, local_store)
            await packaging.start()
            publisher = EventPublisher(broker, producer="ingest")
            link = TakeoverLink(lambda broker=broker: broker.connection)  # type: ignore[misc]
            server = IngestServer(
                IngestConfig(
                    port=0,
                    timeouts=Timeouts(handshake_s=2.0, setup_s=8.0, idle_s=20.0, write_s=4.0),
                    stats_interval_s=1.0,
                ),
                keys=keys,
                leases=PublisherLeases(session_factory(engine), instance=f"test-{name}"),
                sink_factory=packaging.open_session_sink,
                stats=publisher,
                on_stop_requested=packaging.stop_stream,
                take_over=link.ask,
            )
            runtime.server = server
            await server.start()
            await link.serve(server.release_if_silent)
            live = Live(server, packaging, gateway, publisher, nats_client, event_streams)
            made.append((live, broker))
            pair.append(live)
        return pair[0], pair[1]

    try:
        yield make
    finally:
        gateways = {id(live.gateway): live.gateway for live, _ in made}
        for live, broker in made:
            await live.server.stop()
            await live.packaging.aclose()
            await broker.stop()
        for gateway in gateways.values():
            await stop_live(gateway)
        await engine.dispose()


async def check_one_broadcast(
    b: Live, stream_id: str, *, min_duration_s: float
) -> tuple[str, list[StreamSegment]]:
    """After B ended it: one broadcast across both ingests, its playlists and media."""
    started = await b.stored(StreamStarted, STREAMS.name, stream_id)
    ended = await b.stored(StreamEnded, STREAMS.name, stream_id)
    recorded = await until(
        lambda: b.stored(StreamRecorded, STREAMS.name, stream_id), "stream.recorded"
    )
    assert len(started) == len(ended) == len(recorded) == 1
    broadcast_id = started[0].session_id
    assert ended[0].session_id == recorded[0].session_id == broadcast_id
    segments = await b.stored(StreamSegment, LIVE_MEDIA.name, stream_id)
    assert {s.session_id for s in segments} == {broadcast_id}
    assert [s.sequence for s in segments] == list(range(len(segments)))
    assert len([s for s in segments if s.discontinuity]) == 1
    assert sum(s.duration_s for s in segments) == pytest.approx(ended[0].duration_s, abs=FRAME_S)
    assert recorded[0].duration_s == pytest.approx(ended[0].duration_s, abs=FRAME_S)
    assert recorded[0].duration_s > min_duration_s  # both halves, not the second alone
    assert (recorded[0].title, recorded[0].description) == ("Two halves", "dropped once")

    frames = await check_ended_broadcast(
        b, stream_id, broadcast_id, segments, ended[0], recorded[0]
    )
    data = await b.packaging.store.read(recorded[0].object_key)
    assert decoded_video_frames(b"", data) == frames
    return broadcast_id, segments


async def test_a_reconnect_to_another_ingest_continues_the_broadcast(
    make_pair: Callable[[float], Awaitable[tuple[Live, Live]]],
) -> None:
    a, b = await make_pair(WINDOW_S)
    stream_id, key = await add_channel(a)
    await until(lambda: b.server.keys.lookup(hash_key(key)), "the key reached B")
    first = await ffmpeg(a.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(a, stream_id) >= 3, "3 segments live on A")
    finally:
        await stop(first, kill=True)
    await until(lambda: lingering(a.js, stream_id), "A shares the lingering broadcast")

    second = await ffmpeg(b.url(key), seconds=4)
    await stop(second, kill=False)  # a clean unpublish ends it at once (a reset: WINDOW_S)
    await asyncio.wait_for(b.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    await check_one_broadcast(b, stream_id, min_duration_s=5.0)
    # A heard B took it over: no timer, nothing left to end there.
    assert a.packaging.broadcast(stream_id) is None
    assert await shared_record(a.js, stream_id) is None  # B ended it and let it go


async def test_a_reconnect_to_the_same_ingest_still_continues_the_broadcast(
    make_pair: Callable[[float], Awaitable[tuple[Live, Live]]],
) -> None:
    """The hand-off path with the reconnect back on A: A claims its own record."""
    a, b = await make_pair(WINDOW_S)
    stream_id, key = await add_channel(a)
    first = await ffmpeg(a.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(a, stream_id) >= 3, "3 segments live on A")
    finally:
        await stop(first, kill=True)
    await until(lambda: lingering(a.js, stream_id), "A shares the lingering broadcast")
    second = await ffmpeg(a.url(key), seconds=4)
    await stop(second, kill=False)
    await asyncio.wait_for(a.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    await check_one_broadcast(a, stream_id, min_duration_s=5.0)
    assert b.packaging.broadcast(stream_id) is None
    assert await shared_record(a.js, stream_id) is None


async def test_a_half_open_publisher_on_another_ingest_is_replaced(
    make_pair: Callable[[float], Awaitable[tuple[Live, Live]]],
) -> None:
    """The encoder's network dropped but A never saw it: its reconnect lands on B,
    which asks A to drop the silent connection and continues the broadcast."""
    a, b = await make_pair(WINDOW_S)
    stream_id, key = await add_channel(a)
    await until(lambda: b.server.keys.lookup(hash_key(key)), "the key reached B")
    frozen = await ffmpeg(a.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(a, stream_id) >= 3, "3 segments live on A")
        frozen.send_signal(signal.SIGSTOP)  # the socket stays open, nothing more arrives
        holder = a.server.live[stream_id]
        await until(lambda: holder.idle_s() >= a.server.config.takeover_idle_s, "silence")
        asked_at = time.monotonic()
        second = await ffmpeg(b.url(key), seconds=4)
        publisher = await until(
            lambda: (p := b.server.live.get(stream_id)) is not None and p.session is not None,
            "B accepts the publish",
        )
        assert publisher
        accepted_s = time.monotonic() - asked_at
        print(
            f"half-open takeover across ingests: B accepted {accepted_s:.2f} s after ffmpeg began"
        )
        # Well before A's lease (15 s) or idle timeout (20 s) would have freed the channel.
        assert accepted_s < 10.0, accepted_s
        assert stream_id not in a.server.live
        await stop(second, kill=False)  # B's publish ran to its end: it was accepted
        await asyncio.wait_for(b.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            frozen.kill()
        await frozen.wait()
    await check_one_broadcast(b, stream_id, min_duration_s=5.0)
    assert a.packaging.broadcast(stream_id) is None


async def test_a_publisher_that_returns_nowhere_ends_the_broadcast_once(
    make_pair: Callable[[float], Awaitable[tuple[Live, Live]]],
) -> None:
    a, b = await make_pair(2.0)
    stream_id, key = await add_channel(a)
    first = await ffmpeg(a.url(key), seconds=30)
    try:
        await until(lambda: segments_at_gateway(a, stream_id) >= 2, "2 segments live on A")
    finally:
        await stop(first, kill=True)
    await asyncio.wait_for(a.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    await until(lambda: a.stored(StreamRecorded, STREAMS.name, stream_id), "stream.recorded")
    # Past the window and the orphan grace: B's sweep finds nothing to end.
    await asyncio.sleep(ORPHAN_GRACE_S + 2.5)
    assert await b.packaging.sweep_orphans(grace_s=0.0) == 0
    assert len(await a.stored(StreamEnded, STREAMS.name, stream_id)) == 1
    assert len(await a.stored(StreamRecorded, STREAMS.name, stream_id)) == 1
    assert await shared_record(a.js, stream_id) is None


async def test_a_new_publish_ends_a_gone_process_s_expired_broadcast_first(
    make_pair: Callable[[float], Awaitable[tuple[Live, Live]]],
) -> None:
    """A record left lingering past its window by a process that is gone (written here
    as that process would have): the next publish ends it, then starts a new one."""
    _a, b = await make_pair(60.0)
    stream_id, key = await add_channel(b)
    orphan = "orphan-session"
    started = StreamStarted(
        stream_id=stream_id,
        session_id=orphan,
        user_id=f"user-{stream_id}",
        video_codec="avc1.64000d",
        audio_codec="mp4a.40.2",
        width=320,
        height=240,
        fps=30.0,
        init_key=f"live/{stream_id}/{orphan}/init.mp4",
        part_target_s=0.25,
        segment_target_s=2.0,
    )
    record = Shared(
        state="lingering",
        owner="a-process-that-crashed",
        session_id=orphan,
        user_id=f"user-{stream_id}",
        deadline=time.time() - 1.0,
        reason="dropped",
        resume=(7, 7.0, 30, 0.25),
        started_event=started,
        started=True,
        stored_segments=7,
        duration_s=7.0,
    )
    kv = await b.js.key_value(BUCKET)
    await kv.put(stream_id, msgspec.json.encode(record))

    publisher = await ffmpeg(b.url(key), seconds=3)
    await stop(publisher, kill=False)
    await asyncio.wait_for(b.packaging.wait_ended(stream_id, DEADLINE_S), DEADLINE_S)
    await until(
        lambda: _ended_count(b, stream_id, 2), "both broadcasts ended", deadline_s=DEADLINE_S
    )
    ended = await b.stored(StreamEnded, STREAMS.name, stream_id)
    assert sorted(e.session_id == orphan for e in ended) == [False, True]
    (orphan_end,) = [e for e in ended if e.session_id == orphan]
    assert (orphan_end.reason, orphan_end.duration_s) == ("publisher_left", 7.0)
    (new,) = await b.stored(StreamStarted, STREAMS.name, stream_id)
    assert new.session_id != orphan
    segments = await b.stored(StreamSegment, LIVE_MEDIA.name, stream_id)
    assert segments[0].sequence == 0  # a broadcast of its own, not a continuation
    assert not any(s.discontinuity for s in segments)


async def _ended_count(live: Live, stream_id: str, n: int) -> bool:
    return len(await live.stored(StreamEnded, STREAMS.name, stream_id)) >= n


# -- two real ingest processes, one of them crashing -----------------------------------


@dataclass
class Channel:
    stream_id: str
    key: str


@pytest.fixture
async def key_publisher(
    settings: Settings, event_streams: JetStreamContext
) -> AsyncIterator[EventPublisher]:
    broker: NatsBroker = create_broker(settings, name="test-keys")
    await broker.start()
    yield EventPublisher(broker, producer="gateway")
    await broker.stop()


async def channel_for(publisher: EventPublisher, settings: Settings) -> Channel:
    """A channel the running ingest processes know, with its broadcast's title."""
    stream_id, key = secrets.token_hex(6), secrets.token_urlsafe(32)
    user_id = f"user-{stream_id}"
    await publisher.publish(
        ChannelKeyRotated(stream_id=stream_id, user_id=user_id, key_hash=hash_key(key))
    )
    await ingest_caught_up(settings)  # before the title: it counts every channel.* message
    await publisher.publish(
        ChannelUpdated(
            stream_id=stream_id, user_id=user_id, title="Two halves", description="dropped once"
        )
    )
    return Channel(stream_id, key)


def rtmp(port: int, key: str) -> str:
    return f"rtmp://127.0.0.1:{port}/live/{key}"


async def live_segments(js: JetStreamContext, stream_id: str) -> list[StreamSegment]:
    return await stored(js, StreamSegment, LIVE_MEDIA.name, stream_id)


def crash(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)  # no shutdown path at all


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_window_outlives_a_crashed_ingest_process(
    gateway_settings: Settings,
    key_publisher: EventPublisher,
    event_streams: JetStreamContext,
    tmp_path: Path,
) -> None:
    """A lingers a dropped broadcast and is SIGKILLed; the reconnect to B continues it."""
    env = {"VIDEOPICK_LIVE_RECONNECT_WINDOW_S": "60", "VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S": "0"}
    js = event_streams
    with (
        ingest_process(gateway_settings, tmp_path / "ingest-a.log", env) as a,
        ingest_process(gateway_settings, tmp_path / "ingest-b.log", env) as b,
    ):
        channel = await channel_for(key_publisher, gateway_settings)
        first = await ffmpeg(rtmp(a.port, channel.key), seconds=30)
        try:
            await until(lambda: _count_at_least(js, channel.stream_id, 3), "3 segments from A")
        finally:
            await stop(first, kill=True)
        await until(lambda: lingering(js, channel.stream_id), "A shares the lingering broadcast")
        crash(a.pid)
        second = await ffmpeg(rtmp(b.port, channel.key), seconds=4)
        await stop(second, kill=False)
        recorded = await until(
            lambda: stored(js, StreamRecorded, STREAMS.name, channel.stream_id),
            "stream.recorded from B",
        )
    started = await stored(js, StreamStarted, STREAMS.name, channel.stream_id)
    ended = await stored(js, StreamEnded, STREAMS.name, channel.stream_id)
    assert len(started) == len(ended) == len(recorded) == 1
    assert started[0].session_id == ended[0].session_id == recorded[0].session_id
    segments = await live_segments(js, channel.stream_id)
    assert [s.sequence for s in segments] == list(range(len(segments)))
    assert len([s for s in segments if s.discontinuity]) == 1
    assert recorded[0].duration_s == pytest.approx(sum(s.duration_s for s in segments), abs=FRAME_S)
    assert recorded[0].duration_s > 5.0
    assert recorded[0].title == "Two halves"
    store = LocalStore(gateway_settings.resolved_store_path)
    vod = check_recording_playlist((await store.read(recorded[0].playlist_key)).decode())
    assert vod.discontinuities == 1
    assert len(vod.segment_uris) == len(segments)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_crashed_ingest_process_s_lingering_broadcast_is_ended_by_another(
    gateway_settings: Settings,
    key_publisher: EventPublisher,
    event_streams: JetStreamContext,
    tmp_path: Path,
) -> None:
    """Nobody comes back after A crashed: B ends the broadcast, once, with its recording."""
    env = {"VIDEOPICK_LIVE_RECONNECT_WINDOW_S": "3", "VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S": "0"}
    js = event_streams
    with (
        ingest_process(gateway_settings, tmp_path / "ingest-a.log", env) as a,
        ingest_process(gateway_settings, tmp_path / "ingest-b.log", env),
    ):
        channel = await channel_for(key_publisher, gateway_settings)
        first = await ffmpeg(rtmp(a.port, channel.key), seconds=30)
        try:
            await until(lambda: _count_at_least(js, channel.stream_id, 2), "2 segments from A")
        finally:
            await stop(first, kill=True)
        await until(lambda: lingering(js, channel.stream_id), "A shares the lingering broadcast")
        crash(a.pid)
        crashed_at = time.monotonic()
        recorded = await until(
            lambda: stored(js, StreamRecorded, STREAMS.name, channel.stream_id),
            "stream.recorded from B",
        )
        # After the window and the grace the owner had to end it itself.
        assert time.monotonic() - crashed_at >= ORPHAN_GRACE_S
        await asyncio.sleep(3.0)  # a second sweep of B's finds nothing more
        assert await shared_record(js, channel.stream_id) is None
    ended = await stored(js, StreamEnded, STREAMS.name, channel.stream_id)
    recorded = await stored(js, StreamRecorded, STREAMS.name, channel.stream_id)
    assert len(ended) == len(recorded) == 1
    assert ended[0].reason == "publisher_left"
    segments = await live_segments(js, channel.stream_id)
    assert recorded[0].duration_s == pytest.approx(sum(s.duration_s for s in segments), abs=FRAME_S)
    assert recorded[0].title == "Two halves"


async def _count_at_least(js: JetStreamContext, stream_id: str, n: int) -> bool:
    return len(await live_segments(js, stream_id)) >= n


# -- a crash while the publisher is still connected ------------------------------------

# Quick leases so the reconnect to B is accepted soon after A died (renewed every 1 s).
CRASH_ENV = {
    "VIDEOPICK_LIVE_THUMBNAIL_INTERVAL_S": "0",
    "VIDEOPICK_RTMP_STATS_INTERVAL_S": "1",
    "VIDEOPICK_RTMP_PUBLISHER_LEASE_S": "3",
    "VIDEOPICK_LOG_LEVEL": "INFO",  # B's summary of its live-record writes
}


async def _live_record_covers(js: JetStreamContext, stream_id: str, n: int) -> bool:
    """A's live record lists every segment it announced so far (at least ``n``)."""
    record = await shared_record(js, stream_id)
    announced = [s.sequence for s in await live_segments(js, stream_id)]
    return (
        record is not None
        and record.state == "live"
        and len(announced) >= n
        and [s[0] for s in record.segments] == announced
    )


async def _crash_while_live(
    js: JetStreamContext, a_pid: int, a_port: int, channel: Channel
) -> list[StreamSegment]:
    """ffmpeg live on A with several segments stored; A SIGKILLed mid-publish. The
    segments A announced before the kill."""
    publisher = await ffmpeg(rtmp(a_port, channel.key), seconds=60)
    try:
        await until(
            lambda: _live_record_covers(js, channel.stream_id, 4),
            "4 segments from A, all in its live record",
        )
        crash(a_pid)
    finally:
        await stop(publisher, kill=True)  # the encoder gives up on its dead connection
    return await live_segments(js, channel.stream_id)


async def _check_recording_segments(
    store: LocalStore, recorded: StreamRecorded, segments: list[StreamSegment]
) -> None:
    """The VOD playlist lists exactly ``segments``, each decoding after the init."""
    prefix = recorded.playlist_key.rsplit("/", 1)[0]
    vod = check_recording_playlist((await store.read(recorded.playlist_key)).decode())
    assert vod.segment_uris == [s.object_key.rsplit("/", 1)[1] for s in segments]
    init = await store.read(f"{prefix}/init.mp4")
    for uri in vod.segment_uris:
        assert decoded_video_frames(init, await store.read(f"{prefix}/{uri}")) > 0, uri
    assert decoded_video_frames(b"", await store.read(recorded.object_key)) > 0


def _record_update_line(log_path: Path) -> str:
    """B's summary of its live-record writes (the cost per segment)."""
    lines = [
        line
        for line in log_path.read_text(errors="replace").splitlines()
        if "live record updates" in line
    ]
    return lines[-1] if lines else "(no live record update summary)"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_crash_while_live_is_continued_by_a_reconnect_to_another_process(
    gateway_settings: Settings,
    key_publisher: EventPublisher,
    event_streams: JetStreamContext,
    tmp_path: Path,
) -> None:
    """A is SIGKILLed while the publisher is connected; the publisher reconnects to B
    within the window: one broadcast, the sequence carrying on past the segment A was
    cutting, one discontinuity, a recording of both halves."""
    env = {**CRASH_ENV, "VIDEOPICK_LIVE_RECONNECT_WINDOW_S": "60"}
    js = event_streams
    with (
        ingest_process(gateway_settings, tmp_path / "ingest-a.log", env) as a,
        ingest_process(gateway_settings, tmp_path / "ingest-b.log", env) as b,
    ):
        channel = await channel_for(key_publisher, gateway_settings)
        before = await _crash_while_live(js, a.pid, a.port, channel)
        crashed_at = time.monotonic()
        # A's lease lapses (3 s) before B may accept the channel.
        await asyncio.sleep(4.0)
        second = await ffmpeg(rtmp(b.port, channel.key), seconds=4)
        await stop(second, kill=False)  # accepted, published, unpublished cleanly
        recorded = await until(
            lambda: stored(js, StreamRecorded, STREAMS.name, channel.stream_id),
            "stream.recorded from B",
        )
        print(f"B continued {time.monotonic() - crashed_at:.1f} s after the crash")
    started = await stored(js, StreamStarted, STREAMS.name, channel.stream_id)
    ended = await stored(js, StreamEnded, STREAMS.name, channel.stream_id)
    assert len(started) == len(ended) == len(recorded) == 1
    broadcast_id = started[0].session_id
    assert ended[0].session_id == recorded[0].session_id == broadcast_id
    segments = await live_segments(js, channel.stream_id)
    assert {s.session_id for s in segments} == {broadcast_id}
    after = segments[len(before) :]
    assert segments[: len(before)] == before
    assert after
    # The segment A was cutting is skipped (its parts may have been out), no more.
    assert before[-1].sequence < after[0].sequence <= before[-1].sequence + 2
    assert [s.sequence for s in after] == list(range(after[0].sequence, after[-1].sequence + 1))
    assert [s.discontinuity for s in segments] == [False] * len(before) + [True] + [False] * (
        len(after) - 1
    )
    total_s = sum(s.duration_s for s in segments)
    assert ended[0].duration_s == pytest.approx(total_s, abs=FRAME_S)
    assert recorded[0].duration_s == pytest.approx(total_s, abs=FRAME_S)
    assert recorded[0].title == "Two halves"
    store = LocalStore(gateway_settings.resolved_store_path)
    await _check_recording_segments(store, recorded[0], segments)
    assert await shared_record(js, channel.stream_id) is None
    print("B:", _record_update_line(tmp_path / "ingest-b.log"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_crash_while_live_with_no_reconnect_is_ended_once_by_another_process(
    gateway_settings: Settings,
    key_publisher: EventPublisher,
    event_streams: JetStreamContext,
    tmp_path: Path,
) -> None:
    """A is SIGKILLed while the publisher is connected, and nobody comes back: B ends
    the broadcast once, its recording listing every segment A stored."""
    env = {**CRASH_ENV, "VIDEOPICK_LIVE_RECONNECT_WINDOW_S": "3"}
    js = event_streams
    with (
        ingest_process(gateway_settings, tmp_path / "ingest-a.log", env) as a,
        ingest_process(gateway_settings, tmp_path / "ingest-b.log", env),
    ):
        channel = await channel_for(key_publisher, gateway_settings)
        before = await _crash_while_live(js, a.pid, a.port, channel)
        crashed_at = time.monotonic()
        recorded = await until(
            lambda: stored(js, StreamRecorded, STREAMS.name, channel.stream_id),
            "stream.recorded from B",
        )
        # Not before the owner counted as gone and the window (from its last heartbeat)
        # and the grace had passed.
        assert time.monotonic() - crashed_at >= ORPHAN_GRACE_S
        await asyncio.sleep(6.0)  # B's next sweep finds nothing more to end
        assert await shared_record(js, channel.stream_id) is None
    ended = await stored(js, StreamEnded, STREAMS.name, channel.stream_id)
    recorded = await stored(js, StreamRecorded, STREAMS.name, channel.stream_id)
    assert len(ended) == len(recorded) == 1
    assert ended[0].reason == "publisher_left"
    assert await live_segments(js, channel.stream_id) == before
    total_s = sum(s.duration_s for s in before)
    assert ended[0].duration_s == pytest.approx(total_s, abs=FRAME_S)
    assert recorded[0].duration_s == pytest.approx(total_s, abs=FRAME_S)
    assert recorded[0].title == "Two halves"
    store = LocalStore(gateway_settings.resolved_store_path)
    await _check_recording_segments(store, recorded[0], before)


async def test_a_long_broadcast_s_record_keeps_its_segments_in_chunks(
    nats_client: Client,
) -> None:
    """Sealed chunks and the record's own tail read back as every segment, in order;
    the sweep never mistakes a chunk for a record. Prints a record update's cost."""
    handoff = BroadcastHandoff(lambda: nats_client, instance="test-chunks")
    stream_id, session_id = secrets.token_hex(6), "sess-" + secrets.token_hex(4)
    every = [(n, 1.0 + n / 1e4, n == 7, 1000 + n) for n in range(2 * CHUNK_SEGMENTS + 17)]
    for index in range(2):
        part = every[index * CHUNK_SEGMENTS : (index + 1) * CHUNK_SEGMENTS]
        await handoff.write_chunk(stream_id, session_id, index, part)
    record = Shared(
        state="live",
        owner="gone",
        session_id=session_id,
        segments=every[2 * CHUNK_SEGMENTS :],
        chunks=2,
        heartbeat=time.time() - OWNER_GONE_S - 30.0,
        window_s=10.0,
    )
    revision = await handoff.write(stream_id, record, None)
    assert revision is not None
    got = await handoff.read(stream_id)
    assert got is not None
    assert await handoff.segments(stream_id, got[0]) == every
    # A gone owner's live record, past its window and the grace: swept as lingering.
    expired = {name: (view, rev) for name, view, rev in await handoff.expired()}
    assert set(expired) & {stream_id} == {stream_id}
    assert not any("." in name for name in expired)
    view, rev = expired[stream_id]
    assert (view.state, view.deadline, rev) == ("lingering", record.heartbeat + 10.0, revision)

    # The costliest update: a full tail (CHUNK_SEGMENTS - 1 inline), CAS each time.
    record.segments = every[: CHUNK_SEGMENTS - 1]
    took = []
    for _ in range(50):
        began = time.perf_counter()
        revision = await handoff.write(stream_id, record, revision)
        took.append(time.perf_counter() - began)
        assert revision is not None
    took.sort()
    size = len(msgspec.json.encode(record))
    print(
        f"largest live record ({size} bytes): CAS update p50 {took[25] * 1e3:.2f} ms,"
        f" max {took[-1] * 1e3:.2f} ms"
    )
    assert await handoff.write(stream_id, record, revision - 1) is None  # a lost CAS
    await handoff.forget_chunks(stream_id, session_id, 2)
    await handoff.forget(stream_id, revision)
    assert await handoff.read(stream_id) is None
