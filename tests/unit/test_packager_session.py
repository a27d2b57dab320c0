"""The session runtime: media → store → events, in order, and a failing store survived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common.store import StoreUnavailable
from common.store.local import LocalStore
from events.catalog import (
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    VideoPublished,
)
from events.catalog.live import recording_video_id
from events.envelope import Event
from ingest.packager import LivePackaging, flvfile, keys
from ingest.packager.testmedia import make_flv

pytestmark = pytest.mark.unit


class RecordingPublisher:
    """Checks the object each event names is durable at the moment it is published."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.events: list[Event] = []
        self.missing: list[str] = []

    async def publish(self, event: Event, *, correlation_id: str = "") -> None:
        key = (
            getattr(event, "object_key", None)
            or getattr(event, "init_key", None)
            or getattr(event, "master_key", None)
        )
        if key and not await self.store.exists(key):
            self.missing.append(key)
        self.events.append(event)


class FlakyStore(LocalStore):
    """Refuses every third part and one segment: a full or failing store."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls = 0

    async def put(self, key: str, data: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if ("/part" in key and self.calls % 3 == 0) or key.endswith("/seg1.m4s"):
            raise StoreUnavailable("disk full")
        return await super().put(key, data, **kwargs)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flv(tmp_path_factory.mktemp("flv") / "av.flv", seconds=3, gop=30)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    yield store
    await store.close()


async def run_session(packaging: LivePackaging, media: Path) -> None:
    sink = packaging.create_session_sink("chan1", "sess1", "user1")
    flvfile.replay(media, sink)
    await asyncio.wait_for(sink.wait_closed(), 30)


async def test_events_follow_durable_media_in_order(store: LocalStore, media: Path) -> None:
    publisher = RecordingPublisher(store)
    timings: list[float] = []
    packaging = LivePackaging(store, publisher, on_part=lambda t: timings.append(t.latency_s))
    await run_session(packaging, media)

    events = publisher.events
    assert publisher.missing == []
    assert isinstance(events[0], StreamStarted)
    assert events[0].init_key == keys.init_key("chan1", "sess1")
    assert isinstance(events[-3], StreamEnded)
    assert isinstance(events[-2], StreamRecorded)
    # The recording is a video at once: its master names the broadcast's VOD playlist.
    assert isinstance(events[-1], VideoPublished)
    master = (await store.read(events[-1].master_key)).decode()
    assert master.splitlines()[-1] == "../../" + keys.recording_playlist_key("chan1", "sess1")
    assert events[-1].video_id == events[-2].video_id
    parts = [e for e in events if isinstance(e, StreamPart)]
    segments = [e for e in events if isinstance(e, StreamSegment)]
    assert len(segments) == 3
    assert len(timings) == len(parts)
    # Every segment's parts come before it, numbered from 0.
    for segment in segments:
        position = events.index(segment)
        mine = [p for p in parts if p.sequence == segment.sequence]
        assert [p.part_index for p in mine] == list(range(segment.part_count))
        assert all(events.index(p) < position for p in mine)
        assert segment.byte_size == sum(p.byte_size for p in mine)
    recorded = events[-2]
    assert recorded.video_id == recording_video_id("chan1", "sess1")
    assert recorded.byte_size == (await store.stat(recorded.object_key)).size
    assert packaging.sessions == {}


async def test_failing_store_skips_media_not_the_session(tmp_path: Path, media: Path) -> None:
    store = FlakyStore(tmp_path / "flaky")
    await store.ensure_ready()
    publisher = RecordingPublisher(store)
    await run_session(LivePackaging(store, publisher), media)
    await store.close()

    assert publisher.missing == []  # never an event for media that is not there
    types = [e.event_type() for e in publisher.events]
    assert types[0] == "stream.started"
    assert "stream.ended" in types
    segments = [e.sequence for e in publisher.events if isinstance(e, StreamSegment)]
    assert segments == [0, 2]  # seg1 could not be stored
    ended = next(e for e in publisher.events if isinstance(e, StreamEnded))
    assert ended.segment_count == 2
    # No 0-byte objects, nothing for seg1.
    async for info in store.list("live/"):
        assert info.size > 0
    assert not await store.exists(keys.segment_key("chan1", "sess1", 1))


async def test_a_session_id_is_packaged_once_at_a_time(store: LocalStore) -> None:
    packaging = LivePackaging(store, RecordingPublisher(store))
    sink = packaging.create_session_sink("chan1", "dup", "user1")
    with pytest.raises(ValueError, match="already being packaged"):
        packaging.create_session_sink("chan1", "dup", "user1")
    sink.close("publisher_left")
    await asyncio.wait_for(sink.wait_closed(), 10)
    assert packaging.sessions == {}


async def test_publisher_failures_are_logged_not_raised(store: LocalStore, media: Path) -> None:
    class DownPublisher:
        calls = 0

        async def publish(self, event: Event, *, correlation_id: str = "") -> None:
            DownPublisher.calls += 1
            raise TimeoutError("nats down")

    await run_session(LivePackaging(store, DownPublisher()), media)
    # stream.started is retried before each output; nothing else goes out before it.
    assert DownPublisher.calls > 3
