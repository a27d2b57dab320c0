"""Broadcasts across connections: a dropped publisher that comes back continues the
broadcast (one session, one recording), one that does not is ended after the window;
parts leave the store, segments stay; a thumbnail is made from a keyframe.

Real media (``make_flv``: ffmpeg-encoded H.264/AAC), the real packager and a folder
store; the publisher records events in order.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import av
import m3u8
import pytest
from PIL import Image

from common.store.local import LocalStore
from events.catalog import (
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    StreamThumbnail,
)
from events.envelope import Event
from gateway.live.playlist import render
from gateway.live.state import LiveState
from ingest.packager import LivePackaging, PackagerConfig, flvfile, keys
from ingest.packager.recording import StoredSegment, vod_playlist
from ingest.packager.retention import PartRetention
from ingest.packager.testmedia import make_flv
from ingest.packager.thumbnail import ThumbnailError, render_keyframe

pytestmark = pytest.mark.unit

FRAME_S = 1 / 30
E = TypeVar("E", bound=Event)


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, *, correlation_id: str = "") -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_flv(
        tmp_path_factory.mktemp("flv") / "av.flv", seconds=6, gop=30, width=320, height=180
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    yield store
    await store.close()


async def test_a_reconnect_continues_the_broadcast_and_its_recording(
    store: LocalStore, media: Path
) -> None:
    events = Events()
    packaging = LivePackaging(store, events, reconnect_window_s=30.0)
    first = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, first, stop_ms=3000, close_reason="dropped")
    await asyncio.wait_for(first.wait_closed(), 30)
    assert events.of(StreamEnded) == []  # lingering, not ended

    second = packaging.create_session_sink("chan1", "conn2", "user1")
    assert second.broadcast_id == "conn1"
    flvfile.replay(media, second, start_ms=3000, close_reason="publisher_left")
    await asyncio.wait_for(second.wait_closed(), 30)
    await packaging.aclose()

    (started,) = events.of(StreamStarted)
    (ended,) = events.of(StreamEnded)
    (recorded,) = events.of(StreamRecorded)
    assert started.session_id == ended.session_id == recorded.session_id == "conn1"
    assert ended.reason == "publisher_left"
    segments = events.of(StreamSegment)
    assert [s.sequence for s in segments] == list(range(len(segments)))  # sequence goes on
    flagged = [s.sequence for s in segments if s.discontinuity]
    assert flagged == [3]  # 1 s GOPs: the second connection's first segment
    parts = events.of(StreamPart)
    assert [(p.sequence, p.part_index) for p in parts if p.discontinuity] == [(3, 0)]
    assert sum(s.duration_s for s in segments) == pytest.approx(6.0, abs=FRAME_S)
    assert ended.duration_s == pytest.approx(6.0, abs=FRAME_S)
    assert recorded.duration_s == ended.duration_s
    assert ended.segment_count == len(segments)

    # One file with both parts, decode times running on across the reconnect.
    data = await store.read(recorded.object_key)
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        stream = container.streams.video[0]
        times = [float(f.time or 0.0) for f in container.decode(stream)]
    assert len(times) == 180
    times.sort()
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.5 * FRAME_S < step < 1.5 * FRAME_S for step in steps)  # no hole, no overlap
    assert times[-1] - times[0] == pytest.approx(6.0 - FRAME_S, abs=FRAME_S)

    # The gateway's playlist marks the reconnect.
    state = LiveState(window_s=30.0)
    for event in events.events:
        state.apply(event)
    playlist = state.session("conn1")
    assert playlist is not None
    text = render(playlist)
    lines = text.splitlines()
    assert lines.count("#EXT-X-DISCONTINUITY") == 1
    assert lines[lines.index("#EXT-X-DISCONTINUITY") + 3] == "conn1/seg3.m4s"

    # Parts are gone after the broadcast, segments (the recording's source) stay.
    left = [info.key async for info in store.list("live/chan1/conn1/")]
    assert not [key for key in left if "/part" in key]
    assert sum("/seg" in key for key in left) == len(segments)


async def test_no_reconnect_within_the_window_ends_the_broadcast(
    store: LocalStore, media: Path
) -> None:
    events = Events()
    packaging = LivePackaging(store, events, reconnect_window_s=0.5)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, stop_ms=2000, close_reason="dropped")
    await asyncio.wait_for(sink.wait_closed(), 30)
    assert events.of(StreamEnded) == []
    await packaging.wait_ended("chan1", 10)
    (ended,) = events.of(StreamEnded)
    assert ended.reason == "publisher_left"  # stream.ended's vocabulary
    assert len(events.of(StreamRecorded)) == 1
    # A later publish is a new broadcast.
    later = packaging.create_session_sink("chan1", "conn2", "user1")
    assert later.broadcast_id == "conn2"
    later.close("publisher_left")
    await asyncio.wait_for(later.wait_closed(), 10)
    await packaging.aclose()


async def test_an_unpublish_ends_at_once_even_with_a_window(store: LocalStore, media: Path) -> None:
    events = Events()
    packaging = LivePackaging(store, events, reconnect_window_s=60.0)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, stop_ms=2000, close_reason="publisher_left")
    await asyncio.wait_for(sink.wait_closed(), 30)
    assert len(events.of(StreamEnded)) == 1
    await packaging.aclose()


async def test_shutdown_ends_a_lingering_broadcast(store: LocalStore, media: Path) -> None:
    events = Events()
    packaging = LivePackaging(store, events, reconnect_window_s=60.0)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, stop_ms=2000, close_reason="timeout")
    await asyncio.wait_for(sink.wait_closed(), 30)
    assert events.of(StreamEnded) == []
    await asyncio.wait_for(packaging.aclose(), 30)
    assert [e.reason for e in events.of(StreamEnded)] == ["timeout"]
    assert len(events.of(StreamRecorded)) == 1


async def test_parts_leave_the_store_once_no_playlist_lists_them(
    store: LocalStore, tmp_path: Path
) -> None:
    media = make_flv(tmp_path / "8s.flv", seconds=8, gop=30, width=160, height=90, bframes=0)
    events = Events()
    # TARGETDURATION 1: parts are kept for (3 + 2) x 1 s of media behind the edge.
    config = PackagerConfig(segment_target_s=1.0, target_duration_s=1)
    packaging = LivePackaging(store, events, config=config)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, close_reason="publisher_left")
    await asyncio.wait_for(sink.wait_closed(), 30)
    segments = events.of(StreamSegment)
    assert len(segments) == 8
    part = functools.partial(keys.part_key, "chan1", "conn1")
    await asyncio.wait_for(packaging.settle(), 10)  # the rolling deletions ran meanwhile
    assert not await store.exists(part(0, 0))  # ended 1 s in: older than 8 - 5 s
    assert not await store.exists(part(1, 0))
    assert await store.exists(part(3, 0))  # still listable when the stream ended
    # After the end (an ENDLIST playlist lists no parts) the rest go too.
    await packaging.aclose()
    left = [info.key async for info in store.list("live/chan1/conn1/")]
    assert not [key for key in left if "/part" in key]
    assert sum("/seg" in key for key in left) == 8


def test_retention_keeps_the_listed_window_plus_grace() -> None:
    retention = PartRetention(target_duration_s=2.0)
    dropped = [retention.add_segment(seq, 1.0, 4) for seq in range(12)]
    assert all(d == [] for d in dropped[:11])  # ten seconds of media are kept
    assert dropped[11] == [(0, i) for i in range(4)]


async def test_a_thumbnail_is_made_from_a_keyframe(store: LocalStore, media: Path) -> None:
    events = Events()
    packaging = LivePackaging(store, events, thumbnail_interval_s=10.0)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, stop_ms=2000)
    await asyncio.wait_for(sink.wait_closed(), 30)
    await packaging.aclose()
    (thumbnail,) = events.of(StreamThumbnail)  # one interval: one thumbnail
    assert thumbnail.object_key == "live/chan1/thumbnail.jpg"
    image = Image.open(io.BytesIO(await store.read(thumbnail.object_key)))
    assert (image.format, image.size) == ("JPEG", (320, 180))
    assert (thumbnail.width, thumbnail.height) == (320, 180)


def test_a_broken_keyframe_is_a_thumbnail_error() -> None:
    with pytest.raises(ThumbnailError):
        render_keyframe(
            b"\x01\x64\x00\x1f\xff\xe1\x00\x00\x01\x00\x00", b"\x00\x00\x00\x02\x65\x00"
        )


async def test_a_stop_request_ends_a_lingering_broadcast(store: LocalStore, media: Path) -> None:
    events = Events()
    packaging = LivePackaging(store, events, reconnect_window_s=60.0)
    sink = packaging.create_session_sink("chan1", "conn1", "user1")
    flvfile.replay(media, sink, stop_ms=2000, close_reason="dropped")
    await asyncio.wait_for(sink.wait_closed(), 30)
    assert await packaging.stop_stream("chan1")
    assert [e.reason for e in events.of(StreamEnded)] == ["stop_requested"]
    assert not await packaging.stop_stream("chan1")  # nothing waits any more
    # The owner stopped it: the publisher's next publish is a new broadcast.
    later = packaging.create_session_sink("chan1", "conn2", "user1")
    assert later.broadcast_id == "conn2"
    later.close("publisher_left")
    await packaging.aclose()


def test_the_recording_playlist_marks_reconnects_and_holes() -> None:
    segments = [
        StoredSegment(0, 1.0, False),
        StoredSegment(1, 1.00133, False),
        StoredSegment(2, 0.5, True),  # the publisher came back
        StoredSegment(4, 1.0, False),  # seg3 never reached the store
    ]
    playlist = m3u8.M3U8(vod_playlist(segments, target_duration_s=2), strict=True)
    assert playlist.playlist_type == "vod"
    assert playlist.is_endlist
    assert playlist.target_duration == 2
    assert [s.uri for s in playlist.segments] == ["seg0.m4s", "seg1.m4s", "seg2.m4s", "seg4.m4s"]
    assert [s.discontinuity for s in playlist.segments] == [False, False, True, True]
    assert sum(s.duration for s in playlist.segments) == pytest.approx(3.50133)
