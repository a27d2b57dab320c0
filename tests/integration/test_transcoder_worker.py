"""The transcoder component on a real nats-server, database and folder store.

From ``transcode.requested`` to one ``video.published``: progress events, duplicate
deliveries, a killed child, a killed component, poison input and repeated transient
failure (dead letters), and live recordings through the same ladder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from common.db import create_engine, session_factory
from common.settings import Settings
from common.store.local import LocalStore
from events.catalog import (
    StreamRecorded,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeRequested,
    VideoPublished,
    decode_event,
    encode_event,
)
from events.consumer import H_ERROR
from events.envelope import Event
from tests.integration.test_transcoder_media import make_clip
from transcoder import jobs
from transcoder.bus import create_broker
from transcoder.worker import CONSUMER, TranscodeWorker

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

DEADLINE_S = 90.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Events:
    """Everything published on the transcoder's subjects, decoded, as it arrives."""

    seen: list[Event] = field(default_factory=list)
    dead: list[Msg] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def on_event(self, msg: Msg) -> None:
        async with self.changed:
            self.seen.append(decode_event(msg.data))
            self.changed.notify_all()

    async def on_dead(self, msg: Msg) -> None:
        async with self.changed:
            self.dead.append(msg)
            self.changed.notify_all()

    def of(self, kind: type[Event], video_id: str) -> list[Event]:
        return [
            e for e in self.seen if isinstance(e, kind) and getattr(e, "video_id", "") == video_id
        ]

    async def wait(self, predicate: Callable[[], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), DEADLINE_S)
            except TimeoutError:
                kinds = [type(e).__name__ for e in self.seen]
                pytest.fail(f"timed out waiting for {what}; seen: {kinds}")


@pytest.fixture
async def events(nats_client: Client, event_streams: JetStreamContext) -> AsyncIterator[Events]:
    collected = Events()
    subscriptions = [
        await nats_client.subscribe("transcode.>", cb=collected.on_event),
        await nats_client.subscribe("video.>", cb=collected.on_event),
        await nats_client.subscribe("deadletter.>", cb=collected.on_dead),
    ]
    yield collected
    for subscription in subscriptions:
        await subscription.unsubscribe()


@pytest.fixture
def job_settings(settings: Settings, database_url: str, tmp_path: Path) -> Settings:
    return msgspec.structs.replace(
        settings,
        database_url=database_url,
        store_backend="local",
        store_path=tmp_path / "media",
        transcode_ladder=("360p:800", "240p:400"),
        transcode_ack_wait_s=3.0,  # a killed worker's job comes back within seconds
        transcode_retry_backoff_s=(0.2, 0.5),
        transcode_max_deliver=3,
        transcode_thumbnails=2,
    )


@pytest.fixture
async def store(job_settings: Settings) -> AsyncIterator[LocalStore]:
    assert job_settings.store_path is not None
    local = LocalStore(job_settings.store_path)
    await local.ensure_ready()
    yield local
    await local.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "short": make_clip(folder / "short.mp4", seconds=3.0).read_bytes(),
        # Long enough that a kill after the first progress event lands mid-job.
        "long": make_clip(folder / "long.mp4", seconds=12.0).read_bytes(),
    }


@dataclass
class Component:
    worker: TranscodeWorker
    broker: NatsBroker


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Component]:
    worker = TranscodeWorker(settings)
    broker = create_broker(settings, worker=worker)
    await worker.start()
    await broker.start()
    try:
        yield Component(worker, broker)
    finally:
        await worker.stop()
        await broker.stop()


@pytest.fixture
async def component(job_settings: Settings, events: Events) -> AsyncIterator[Component]:
    async with running(job_settings) as started:
        yield started


async def request(
    js: JetStreamContext,
    store: LocalStore,
    video_id: str,
    source: bytes,
    *,
    copies: int = 1,
) -> TranscodeRequested:
    key = f"uploads/{video_id}/source.mp4"
    await store.put(key, source, content_type="video/mp4")
    event = TranscodeRequested(
        video_id=video_id,
        user_id="u1",
        source_key=key,
        origin="upload",
        title=f"title of {video_id}",
        description="a test video",
    )
    for copy in range(copies):
        # Distinct Nats-Msg-Id: JetStream stores every copy, as after the duplicate
        # window, or when an upstream retried with a new message id.
        await js.publish(
            event.subject(),
            encode_event(event),
            headers={"Nats-Msg-Id": f"{event.event_id}-{copy}"},
        )
    return event


async def job_row(settings: Settings, video_id: str) -> jobs.TranscodeJob | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        return await jobs.load(session_factory(engine), video_id)
    finally:
        await engine.dispose()


async def consumer_idle(js: JetStreamContext, durable: str = CONSUMER) -> None:
    """Every delivered message acknowledged and nothing left to deliver."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            info = await js.consumer_info("MEDIA", durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.1)  # polling the server's counters, bounded above


async def test_request_becomes_one_published_video(
    component: Component,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
    job_settings: Settings,
) -> None:
    sent = await request(event_streams, store, "w1", clips["short"])
    await events.wait(lambda: bool(events.of(VideoPublished, "w1")), "video.published")
    await consumer_idle(event_streams)  # acked: the publishing transaction committed

    progress = events.of(TranscodeProgress, "w1")
    assert progress, "no transcode.progress"
    assert {p.stage for p in progress} >= {"thumbnails"}  # type: ignore[attr-defined]
    assert all(0 <= p.percent <= 100 for p in progress)  # type: ignore[attr-defined]
    (completed,) = events.of(TranscodeCompleted, "w1")
    assert isinstance(completed, TranscodeCompleted)
    assert [r.name for r in completed.renditions] == ["360p", "240p"]
    assert completed.correlation_id == sent.event_id
    assert completed.producer == "transcoder"
    (published,) = events.of(VideoPublished, "w1")
    assert isinstance(published, VideoPublished)
    assert (published.title, published.description) == ("title of w1", "a test video")
    assert (published.width, published.height, published.origin) == (640, 360, "upload")
    assert published.master_key == "vod/w1/master.m3u8"
    assert published.duration_s == pytest.approx(3.0, abs=0.05)
    assert await store.exists(published.master_key)
    assert await store.exists(published.poster_key)
    row = await job_row(job_settings, "w1")
    assert row is not None
    assert (row.status, row.attempts) == ("published", 1)


async def test_the_same_request_twice_publishes_once(
    job_settings: Settings,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
) -> None:
    # Two workers: the copies are taken concurrently; the second finds a live lease.
    settings = msgspec.structs.replace(job_settings, transcode_workers=2)
    async with running(settings):
        await request(event_streams, store, "w2", clips["short"], copies=2)
        await events.wait(lambda: bool(events.of(VideoPublished, "w2")), "video.published")
        await consumer_idle(event_streams)
        keys = sorted([info.key async for info in store.list("vod/w2/")])
        # And once more, after it finished: acked without work.
        await request(event_streams, store, "w2", clips["short"])
        await consumer_idle(event_streams)
    assert len(events.of(VideoPublished, "w2")) == 1
    assert len(events.of(TranscodeCompleted, "w2")) == 1
    assert sorted([info.key async for info in store.list("vod/w2/")]) == keys
    row = await job_row(job_settings, "w2")
    assert row is not None
    assert (row.status, row.attempts) == ("published", 1)  # transcoded once


async def test_a_killed_child_is_redelivered_and_finishes_once(
    component: Component,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
    job_settings: Settings,
) -> None:
    await request(event_streams, store, "w3", clips["long"])
    await events.wait(lambda: bool(events.of(TranscodeProgress, "w3")), "first progress")
    child = component.worker.children["w3"]
    os.kill(child.pid, signal.SIGKILL)
    assert not await store.exists("vod/w3/master.m3u8")  # it died mid-job

    await events.wait(lambda: bool(events.of(VideoPublished, "w3")), "video.published")
    await consumer_idle(event_streams)
    (failed,) = events.of(TranscodeFailed, "w3")
    assert isinstance(failed, TranscodeFailed)
    assert (failed.attempt, failed.permanent) == (1, False)
    assert "SIGKILL" in failed.reason
    assert len(events.of(VideoPublished, "w3")) == 1
    row = await job_row(job_settings, "w3")
    assert row is not None
    assert (row.status, row.attempts) == ("published", 2)
    assert not events.dead


async def test_poison_input_fails_permanently_and_is_dead_lettered(
    component: Component,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    job_settings: Settings,
) -> None:
    await request(event_streams, store, "w4", b"not a video at all\n" * 500)
    await events.wait(lambda: bool(events.dead), "a dead letter")
    (failed,) = events.of(TranscodeFailed, "w4")
    assert isinstance(failed, TranscodeFailed)
    assert (failed.attempt, failed.permanent) == (1, True)
    assert "not a supported video container" in failed.reason
    (dead,) = events.dead
    assert dead.subject == f"deadletter.MEDIA.{CONSUMER}"
    assert "poison input" in (dead.headers or {})[H_ERROR]
    assert decode_event(dead.data).video_id == "w4"  # type: ignore[attr-defined]
    assert not events.of(VideoPublished, "w4")
    row = await job_row(job_settings, "w4")
    assert row is not None
    assert (row.status, row.attempts) == ("failed", 1)


async def test_repeated_transient_failure_is_retried_then_dead_lettered(
    job_settings: Settings,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
) -> None:
    # 48 MiB of address space: the child cannot even load FFmpeg. Nothing about the
    # input is wrong, so it is retried (backoff) until max_deliver, then dead-lettered.
    settings = msgspec.structs.replace(
        job_settings, transcode_memory_limit_mb=48, transcode_max_deliver=2
    )
    async with running(settings):
        await request(event_streams, store, "w5", clips["short"])
        await events.wait(lambda: bool(events.dead), "a dead letter")
    failures = events.of(TranscodeFailed, "w5")
    assert [(f.attempt, f.permanent) for f in failures] == [(1, False), (2, True)]  # type: ignore[attr-defined]
    assert not events.of(VideoPublished, "w5")


async def test_a_recording_goes_through_the_same_ladder(
    component: Component,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
) -> None:
    await store.put("live/s1/recording.mp4", clips["short"])
    recorded = StreamRecorded(
        stream_id="s1",
        session_id="sess-1",
        user_id="u7",
        video_id="rec1",
        object_key="live/s1/recording.mp4",
        duration_s=3.0,
        byte_size=len(clips["short"]),
        title="My live",
    )
    await event_streams.publish(
        recorded.subject(), encode_event(recorded), headers={"Nats-Msg-Id": recorded.event_id}
    )
    await events.wait(lambda: bool(events.of(VideoPublished, "rec1")), "video.published")
    (published,) = events.of(VideoPublished, "rec1")
    assert isinstance(published, VideoPublished)
    assert (published.origin, published.stream_id, published.title) == (
        "recording",
        "s1",
        "My live",
    )
    assert published.user_id == "u7"


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDEOPICK_")}
    values = {
        "NATS_URL": settings.resolved_nats_url,
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "STORE_BACKEND": "local",
        "STORE_PATH": str(settings.store_path),
        "TRANSCODE_LADDER": ",".join(settings.transcode_ladder),
        "TRANSCODE_ACK_WAIT_S": str(settings.transcode_ack_wait_s),
        "TRANSCODE_RETRY_BACKOFF_S": ",".join(map(str, settings.transcode_retry_backoff_s)),
        "TRANSCODE_THUMBNAILS": str(settings.transcode_thumbnails),
    }
    env.update({f"VIDEOPICK_{name}": value for name, value in values.items()})
    return env


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie: dead, waiting for its reaper


async def _all_gone(pids: list[int], deadline_s: float = 10.0) -> None:
    for _ in range(int(deadline_s / 0.05)):
        if all(_gone(pid) for pid in pids):
            return
        await asyncio.sleep(0.05)  # polling /proc, bounded by the deadline
    pytest.fail(f"processes {pids} outlived their parent")


def _start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "transcoder"],
            cwd=REPO,
            env=_environment(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def test_a_killed_component_is_redelivered_and_finishes_once(
    job_settings: Settings,
    events: Events,
    event_streams: JetStreamContext,
    store: LocalStore,
    clips: dict[str, bytes],
    tmp_path: Path,
) -> None:
    log = tmp_path / "transcoder.log"
    first = _start(job_settings, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        await request(event_streams, store, "w6", clips["long"])
        await events.wait(lambda: bool(events.of(TranscodeProgress, "w6")), "first progress")
        orphans = _children(first.pid)
        first.kill()  # SIGKILL: no clean-up, no nak; the message is simply never acked
        first.wait(10)
        assert orphans, "the job's child process was not found"
        await _all_gone(orphans)  # PR_SET_PDEATHSIG takes the job's child down too
        assert not await store.exists("vod/w6/master.m3u8")

        second = _start(job_settings, log)
        await events.wait(lambda: bool(events.of(VideoPublished, "w6")), "video.published")
        await consumer_idle(event_streams)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(20)
    assert len(events.of(VideoPublished, "w6")) == 1, log.read_text()[-3000:]
    row = await job_row(job_settings, "w6")
    assert row is not None
    assert (row.status, row.attempts) == ("published", 2)
    assert second is not None
    assert second.returncode == 0  # SIGTERM: a clean stop
