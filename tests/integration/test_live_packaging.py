"""Sink → object store (folder and MinIO) + events on a real JetStream.

Every event must name media that is already durable, the segment objects must be their
parts concatenated, and the recording must play with PyAV.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from common.settings import Settings
from common.store import ObjectStore
from events.broker import create_broker
from events.catalog import (
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    decode_event,
)
from events.envelope import Event
from events.replay import iter_stored
from events.streams import LIVE_MEDIA, STREAMS
from ingest.packager import PartTiming, create_packaging, flvfile
from ingest.packager.testmedia import make_flv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flv(tmp_path_factory.mktemp("flv") / "av.flv", seconds=3, gop=30)


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="ingest-test")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    fixture = "local_store" if request.param == "local" else "s3_store"
    store: ObjectStore = request.getfixturevalue(fixture)
    return store


async def stored_events(js: JetStreamContext, subject: str, stream: str) -> list[Event]:
    return [decode_event(message.data) async for message in iter_stored(js, subject, stream=stream)]


async def test_broadcast_lands_in_the_store_then_on_the_bus(
    settings: Settings,
    broker: NatsBroker,
    store: ObjectStore,
    event_streams: JetStreamContext,
    media: Path,
) -> None:
    timings: list[PartTiming] = []
    packaging = create_packaging(settings, broker, store, on_part=timings.append)
    sink = packaging.create_session_sink("chan-int", "sess-int", "user-7")
    flvfile.replay(media, sink)
    await asyncio.wait_for(sink.wait_closed(), 60)

    lifecycle = await stored_events(event_streams, "stream.*.chan-int", STREAMS.name)
    media_events = await stored_events(event_streams, "stream.*.chan-int", LIVE_MEDIA.name)
    started = [e for e in lifecycle if isinstance(e, StreamStarted)]
    ended = [e for e in lifecycle if isinstance(e, StreamEnded)]
    recorded = [e for e in lifecycle if isinstance(e, StreamRecorded)]
    assert len(started) == len(ended) == len(recorded) == 1
    assert started[0].producer == "ingest"
    assert started[0].correlation_id == "sess-int"

    parts = [e for e in media_events if isinstance(e, StreamPart)]
    segments = [e for e in media_events if isinstance(e, StreamSegment)]
    assert len(segments) == 3 == ended[0].segment_count
    assert len(parts) == len(timings)
    init = await store.read(started[0].init_key)
    for segment in segments:
        data = await store.read(segment.object_key)
        assert len(data) == segment.byte_size
        mine = sorted(
            (p for p in parts if p.sequence == segment.sequence), key=lambda p: p.part_index
        )
        assert len(mine) == segment.part_count
        assert data == b"".join([await store.read(p.object_key) for p in mine])

    recording = await store.read(recorded[0].object_key)
    assert recording == init + b"".join([await store.read(s.object_key) for s in segments])
    with av.open(io.BytesIO(recording), mode="r", format="mp4") as container:
        frames = len(list(container.decode(container.streams.video[0])))
    assert frames == 90
    assert recorded[0].duration_s == pytest.approx(3.0, abs=1 / 30)
