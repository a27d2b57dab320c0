"""A realistic catalog history, shared by the projection's unit and integration tests.

Also checks the property that makes "drop it and replay it" safe: the catalog fold
gives the same rows whatever the interleaving between streams (each stream's own
order kept), and a late copy of any event changes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping, Sequence

import msgspec
import pytest

from events.catalog import (
    ChannelUpdated,
    Event,
    MediaProbe,
    Rendition,
    StreamEnded,
    StreamRecorded,
    StreamStarted,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    UploadCompleted,
    UserRegistered,
    VideoDeleted,
    VideoPublished,
)
from events.streams import stream_for_subject
from gateway.projections.reducer import CatalogState, apply_event

pytestmark = pytest.mark.unit

USERS = {
    "alice": ("u-alice", "s-alice"),
    "bob": ("u-bob", "s-bob"),
    "carol": ("u-carol", "s-carol"),
}
PAGED_VIDEOS = 25  # carol's published uploads, for pagination


class _Clock:
    """Event times one second apart, ending a little before now (live sessions are recent)."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def tick(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


def _upload(
    clock: _Clock, user_id: str, video_id: str, title: str, duration: float = 12.0
) -> Event:
    return UploadCompleted(
        occurred_at=clock.tick(),
        upload_id=f"up-{video_id}",
        user_id=user_id,
        video_id=video_id,
        object_key=f"uploads/{video_id}/source.mp4",
        size=1234,
        sha256="0" * 64,
        probe=MediaProbe(container="mp4", duration_s=duration, width=1280, height=720),
        filename=f"{title}.mp4",
        title=title,
        description=f"about {title}",
    )


def _published(
    clock: _Clock,
    user_id: str,
    video_id: str,
    title: str,
    *,
    stream_id: str = "",
    origin: str = "upload",
) -> Event:
    return VideoPublished(
        occurred_at=clock.tick(),
        video_id=video_id,
        user_id=user_id,
        title=title,
        description=f"published {title}",
        duration_s=12.5,
        master_key=f"vod/{video_id}/master.m3u8",
        poster_key=f"vod/{video_id}/poster.jpg",
        width=1280,
        height=720,
        origin=origin,
        stream_id=stream_id,
    )


def scenario(
    start: dt.datetime | None = None,
    users: Mapping[str, tuple[str, str]] = USERS,
    *,
    registrations: bool = True,
) -> list[Event]:
    """Registrations, channel updates, two broadcasts (one recorded), uploads through
    transcoding to published, a permanent failure, a deletion, and a page-able list.

    ``users``: name → (user_id, stream_id) of alice, bob and carol; ``registrations``
    False leaves out their ``user.registered`` (the gateway published them already).
    """
    clock = _Clock(start or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    events: list[Event] = [
        UserRegistered(occurred_at=clock.tick(), user_id=uid, username=name, stream_id=sid)
        for name, (uid, sid) in users.items()
        if registrations
    ]
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    events += [
        ChannelUpdated(
            occurred_at=clock.tick(), stream_id=alice[1], user_id=alice[0], title="Morning show"
        ),
        StreamStarted(
            occurred_at=clock.tick(),
            stream_id=alice[1],
            session_id="sess-a1",
            user_id=alice[0],
            video_codec="avc1.64001f",
            audio_codec="mp4a.40.2",
            width=1280,
            height=720,
            fps=30.0,
        ),
        StreamEnded(
            occurred_at=clock.tick(),
            stream_id=alice[1],
            session_id="sess-a1",
            reason="publisher_left",
            duration_s=60,
        ),
        StreamRecorded(
            occurred_at=clock.tick(),
            stream_id=alice[1],
            session_id="sess-a1",
            user_id=alice[0],
            video_id="v-rec-1",
            object_key="rec/v-rec-1.mp4",
            duration_s=60.0,
            byte_size=10,
            title="Morning show",
        ),
        _published(
            clock, alice[0], "v-rec-1", "Morning show", stream_id=alice[1], origin="recording"
        ),
        ChannelUpdated(
            occurred_at=clock.tick(),
            stream_id=alice[1],
            user_id=alice[0],
            title="Evening show",
            description="live!",
        ),
        StreamStarted(
            occurred_at=clock.tick(),
            stream_id=alice[1],
            session_id="sess-a2",
            user_id=alice[0],
            video_codec="avc1.64001f",
            audio_codec="mp4a.40.2",
            width=1920,
            height=1080,
            fps=60.0,
        ),
        StreamStarted(
            occurred_at=clock.tick(),
            stream_id=bob[1],
            session_id="sess-b1",
            user_id=bob[0],
            video_codec="avc1.42e01e",
            width=640,
            height=360,
            fps=25.0,
        ),
        # alice: upload → progress → completed → published
        _upload(clock, alice[0], "v-up-1", "Cats"),
        TranscodeProgress(
            occurred_at=clock.tick(), video_id="v-up-1", percent=10, stage="encoding"
        ),
        TranscodeProgress(
            occurred_at=clock.tick(), video_id="v-up-1", percent=55.5, stage="encoding"
        ),
        TranscodeCompleted(
            occurred_at=clock.tick(),
            video_id="v-up-1",
            user_id=alice[0],
            master_key="vod/v-up-1/master.m3u8",
            renditions=[
                Rendition(
                    name="720p",
                    width=1280,
                    height=720,
                    bandwidth=1,
                    average_bandwidth=1,
                    codecs="avc1",
                    playlist_key="vod/v-up-1/720p/index.m3u8",
                )
            ],
            poster_key="vod/v-up-1/poster.jpg",
            duration_s=12.4,
        ),
        _published(clock, alice[0], "v-up-1", "Cats (final)"),
        # bob: a permanent failure, and a video published then deleted
        _upload(clock, bob[0], "v-up-2", "Broken"),
        TranscodeProgress(occurred_at=clock.tick(), video_id="v-up-2", percent=5, stage="decoding"),
        TranscodeFailed(
            occurred_at=clock.tick(),
            video_id="v-up-2",
            user_id=bob[0],
            reason="transient",
            attempt=1,
        ),
        TranscodeFailed(
            occurred_at=clock.tick(),
            video_id="v-up-2",
            user_id=bob[0],
            reason="not decodable",
            attempt=3,
            permanent=True,
        ),
        _upload(clock, bob[0], "v-up-3", "Oops"),
        _published(clock, bob[0], "v-up-3", "Oops"),
        VideoDeleted(occurred_at=clock.tick(), video_id="v-up-3", user_id=bob[0]),
        # carol: one still processing, and a long list of published ones
        _upload(clock, carol[0], "v-up-4", "Soon"),
        TranscodeProgress(
            occurred_at=clock.tick(), video_id="v-up-4", percent=30, stage="encoding"
        ),
    ]
    for n in range(PAGED_VIDEOS):
        video_id = f"v-page-{n:02d}"
        events += [
            _upload(clock, carol[0], video_id, f"Clip {n}"),
            _published(clock, carol[0], video_id, f"Clip {n}"),
        ]
    return events


def stream_of(event: Event) -> str:
    return stream_for_subject(event.subject()).name


def fold(events: Iterable[Event]) -> dict[str, list[dict[str, object]]]:
    """The final rows, as plain data (what a table dump compares)."""
    state = CatalogState()
    for event in events:
        apply_event(state, event)
    return {
        "users": [msgspec.structs.asdict(state.users[k]) for k in sorted(state.users)],
        "channels": [msgspec.structs.asdict(state.channels[k]) for k in sorted(state.channels)],
        "videos": [msgspec.structs.asdict(state.videos[k]) for k in sorted(state.videos)],
    }


def interleave(events: Sequence[Event], rng: random.Random) -> list[Event]:
    """A random merge of the per-stream sequences, each stream's order kept."""
    queues: dict[str, list[Event]] = {}
    for event in events:
        queues.setdefault(stream_of(event), []).append(event)
    for queue in queues.values():
        queue.reverse()
    out: list[Event] = []
    while queues:
        name = rng.choice(sorted(queues))
        out.append(queues[name].pop())
        if not queues[name]:
            del queues[name]
    return out


def test_the_scenario_touches_every_catalog_stream() -> None:
    assert {stream_of(e) for e in scenario()} == {"ACCOUNTS", "STREAMS", "UPLOADS", "MEDIA"}


@pytest.mark.parametrize("seed", range(40))
def test_any_interleaving_of_streams_gives_the_same_rows(seed: int) -> None:
    events = scenario(dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    assert fold(interleave(events, random.Random(seed))) == fold(events)


def test_a_late_copy_of_any_event_changes_nothing() -> None:
    """Beyond JetStream's duplicate window a republished event gets a new sequence."""
    events = scenario(dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    expected = fold(events)
    for index, event in enumerate(events):
        assert fold([*events, event]) == expected, (
            f"copy of #{index} {event.event_type()} changed rows"
        )
