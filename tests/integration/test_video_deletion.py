"""A deleted video stops being served and its media leaves the store (both store backends).

The gateway in-process (ASGI) and the transcoder component, on a real nats-server, a
database, and the folder store or MinIO: an upload transcoded then deleted (404 on
every media path, nothing left in the store), a recording deleted (its live session's
objects too, even those the gateway's media cache held), a deletion redelivered or
interrupted mid-way, and transcodes that end, or are requested, after the delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import msgspec
import pytest
from litestar import Litestar
from nats.aio.client import Client
from nats.js import JetStreamContext

from common.db import create_engine, session_factory
from common.settings import Settings
from common.store import ObjectStore, StoreUnavailable
from common.store.s3 import S3Store
from events.catalog import (
    MediaProbe,
    StreamRecorded,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeRequested,
    UploadCompleted,
    VideoDeleted,
    VideoPublished,
    encode_event,
)
from events.catalog.live import recording_video_id
from gateway.projections import STATE_KEY, Projections
from tests.fixtures.gateway import GatewayUser, register_user, running_gateway
from tests.integration.test_gateway_catalog import publish, wait_for_checkpoints, wait_until
from tests.integration.test_gateway_catalog_api import assert_problem
from tests.integration.test_transcoder_media import make_clip, store_settings
from tests.integration.test_transcoder_worker import Component, Events, consumer_idle, running
from transcoder import deletion, jobs
from transcoder.worker import CONSUMER

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    backend: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return backend


@pytest.fixture
def stack_settings(
    settings: Settings, database_url: str, store: ObjectStore, request: pytest.FixtureRequest
) -> Settings:
    minio = request.getfixturevalue("minio_server") if isinstance(store, S3Store) else None
    return msgspec.structs.replace(
        store_settings(settings, store, minio),
        database_url=database_url,
        transcode_ladder=("240p:400",),
        transcode_thumbnails=2,
        transcode_ack_wait_s=3.0,
        transcode_retry_backoff_s=(0.2, 0.5),
        transcode_max_deliver=3,
        # The recording below is made of stand-in bytes: nothing to transcode.
        transcode_recordings=False,
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "short": make_clip(folder / "short.mp4", width=320, height=180, seconds=2.0).read_bytes(),
        # Long enough that a delete sent at the first progress event lands mid-job.
        "long": make_clip(folder / "long.mp4", seconds=12.0).read_bytes(),
    }


@dataclass
class Stack:
    app: Litestar
    client: httpx.AsyncClient
    js: JetStreamContext
    store: ObjectStore
    events: Events
    worker_settings: Settings
    user: GatewayUser
    transcoder: Component

    @property
    def projections(self) -> Projections:
        projections: Projections = self.app.state[STATE_KEY]
        return projections


@pytest.fixture
async def seen(nats_client: Client, event_streams: JetStreamContext) -> AsyncIterator[Events]:
    collected = Events()
    subscriptions = [
        await nats_client.subscribe(subject, cb=callback)
        for subject, callback in (
            ("transcode.>", collected.on_event),
            ("video.>", collected.on_event),
            ("deadletter.>", collected.on_dead),
        )
    ]
    yield collected
    for subscription in subscriptions:
        await subscription.unsubscribe()


@pytest.fixture
async def stack(
    stack_settings: Settings, store: ObjectStore, event_streams: JetStreamContext, seen: Events
) -> AsyncIterator[Stack]:
    async with (
        running_gateway(stack_settings) as (app, client),
        running(stack_settings) as transcoder,
    ):
        user = await register_user(client, "dora")
        yield Stack(app, client, event_streams, store, seen, stack_settings, user, transcoder)


async def keys_under(store: ObjectStore, *prefixes: str) -> list[str]:
    return [info.key for prefix in prefixes async for info in store.list(prefix)]


async def upload(stack: Stack, data: bytes) -> tuple[str, str]:
    """An upload as the uploader leaves it: its source stored, ``upload.completed`` and
    ``transcode.requested`` published. Returns (video id, upload id)."""
    upload_id, video_id = f"up-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    source = f"uploads/{upload_id}/source"
    await stack.store.put(source, data, content_type="video/mp4")
    completed = UploadCompleted(
        upload_id=upload_id,
        user_id=stack.user.id,
        video_id=video_id,
        object_key=source,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        probe=MediaProbe(container="mp4", duration_s=2.0, width=320, height=180),
        title="soon gone",
    )
    requested = TranscodeRequested(
        video_id=video_id, user_id=stack.user.id, source_key=source, origin="upload"
    )
    await publish(stack.js, [completed, requested])
    return video_id, upload_id


async def wait_status(stack: Stack, video_id: str, status: str) -> None:
    async def reached() -> bool:
        response = await stack.client.get(f"/api/v2/videos/{video_id}")
        return response.status_code == 200 and response.json()["status"] == status

    await wait_until(reached, f"video {video_id} {status}")


async def all_answer(client: httpx.AsyncClient, paths: list[str], status: int) -> bool:
    return all([(await client.get(path)).status_code == status for path in paths])


async def delete_video(stack: Stack, video_id: str) -> None:
    response = await stack.client.delete(f"/api/v2/videos/{video_id}", headers=stack.user.headers)
    assert response.status_code == 202, response.text


async def wait_empty(store: ObjectStore, *prefixes: str) -> None:
    async def empty() -> bool:
        return not await keys_under(store, *prefixes)

    await wait_until(empty, f"nothing left under {prefixes}")


async def test_a_deleted_upload_is_gone_from_delivery_and_the_store(
    stack: Stack, clips: dict[str, bytes]
) -> None:
    video_id, upload_id = await upload(stack, clips["short"])
    await wait_status(stack, video_id, "ready")
    vod = f"vod/{video_id}/"
    stored = await keys_under(stack.store, vod)
    paths = ["/" + key for key in stored]
    names = {key.removeprefix(vod) for key in stored}
    # Every kind of file the transcoder writes, and delivery serves each of them.
    assert {"master.m3u8", "poster.jpg", "sprite.jpg", "sprite.vtt"} <= names
    # The 320x180 source is never upscaled: one rendition, whatever its name.
    (rendition,) = {name.split("/")[0] for name in names if name.endswith("/index.m3u8")}
    assert {f"{rendition}/init.mp4", f"{rendition}/seg_00000.m4s"} <= names
    assert "thumbs/thumb_000.jpg" in names
    assert await all_answer(stack.client, paths, 200)
    other_id, _ = await upload(stack, clips["short"])  # another video: must stay
    await wait_status(stack, other_id, "ready")

    await delete_video(stack, video_id)
    await wait_until(lambda: all_answer(stack.client, paths, 404), "404 on every media path")
    await wait_empty(stack.store, vod, f"uploads/{upload_id}/")
    # Delivery itself refuses the video, whatever the store holds (a file put back).
    await stack.store.put(f"{vod}master.m3u8", b"#EXTM3U\n")
    await wait_until(
        lambda: all_answer(stack.client, [f"/{vod}master.m3u8"], 404), "delivery's own 404"
    )
    body = assert_problem(await stack.client.get(f"/{vod}master.m3u8"), 404)
    assert "deleted" in body["detail"]
    await stack.store.delete(f"{vod}master.m3u8")
    await consumer_idle(stack.js, deletion.CONSUMER)
    assert_problem(await stack.client.get(f"/api/v2/videos/{video_id}"), 404)
    assert await keys_under(stack.store, f"vod/{other_id}/")
    assert (await stack.client.get(f"/vod/{other_id}/master.m3u8")).status_code == 200
    assert not stack.events.dead


async def test_a_deleted_recording_takes_its_broadcast_with_it(stack: Stack) -> None:
    stream_id, session_id = stack.user.stream_id, f"s-{uuid.uuid4().hex[:12]}"
    video_id = recording_video_id(stream_id, session_id)
    live = f"live/{stream_id}/{session_id}/"
    kept = f"live/{stream_id}/s-another-broadcast/seg0.m4s"
    objects = {
        f"{live}init.mp4": b"init",
        f"{live}seg0.m4s": b"segment 0",
        f"{live}seg1.m4s": b"segment 1",
        f"{live}recording.m3u8": b"#EXTM3U\n#EXT-X-ENDLIST\n",
        f"recordings/{stream_id}/{session_id}.mp4": b"the whole broadcast",
        f"vod/{video_id}/master.m3u8": b"#EXTM3U\n",
        f"vod/{video_id}/live-poster.jpg": b"\xff\xd8poster",
        kept: b"another broadcast's",
    }
    for key, data in objects.items():
        await stack.store.put(key, data)
    recorded = StreamRecorded(
        stream_id=stream_id,
        session_id=session_id,
        user_id=stack.user.id,
        video_id=video_id,
        object_key=f"recordings/{stream_id}/{session_id}.mp4",
        duration_s=4.0,
        byte_size=19,
        playlist_key=f"{live}recording.m3u8",
    )
    published = VideoPublished(
        video_id=video_id,
        user_id=stack.user.id,
        title="a broadcast",
        description="",
        duration_s=4.0,
        master_key=f"vod/{video_id}/master.m3u8",
        poster_key=f"vod/{video_id}/live-poster.jpg",
        origin="recording",
        stream_id=stream_id,
    )
    await wait_for_checkpoints(
        stack.projections.sessions, await publish(stack.js, [recorded, published])
    )
    paths = [
        f"/live/{stream_id}/{session_id}/recording.m3u8",
        f"/live/{stream_id}/{session_id}/seg0.m4s",
        f"/vod/{video_id}/master.m3u8",
        f"/vod/{video_id}/live-poster.jpg",
    ]
    assert await all_answer(stack.client, paths, 200)  # now in the live media cache too

    await delete_video(stack, video_id)
    await wait_until(lambda: all_answer(stack.client, paths, 404), "404 on the recording")
    assert_problem(await stack.client.get(paths[0]), 404)
    await wait_empty(stack.store, live, f"recordings/{stream_id}/", f"vod/{video_id}/")
    assert await keys_under(stack.store, kept) == [kept]


async def test_a_redelivered_deletion_is_harmless(stack: Stack, clips: dict[str, bytes]) -> None:
    video_id, upload_id = await upload(stack, clips["short"])
    await wait_status(stack, video_id, "ready")
    await delete_video(stack, video_id)
    await wait_empty(stack.store, f"vod/{video_id}/", f"uploads/{upload_id}/")
    await consumer_idle(stack.js, deletion.CONSUMER)
    (deleted,) = stack.events.of(VideoDeleted, video_id)
    assert isinstance(deleted, VideoDeleted)
    assert deleted.upload_id == upload_id  # the gateway told where the source lies

    # The same event again (past the duplicate window: another message id), and a second
    # delete of the same video (a new event): acked, nothing dead-lettered, no revival.
    again = deleted.with_envelope(event_id=str(uuid.uuid4()))
    for event, suffix in ((deleted, ":again"), (again, "")):
        await stack.js.publish(
            event.subject(), encode_event(event), headers={"Nats-Msg-Id": event.event_id + suffix}
        )
    await consumer_idle(stack.js, deletion.CONSUMER)
    assert not stack.events.dead
    assert len(stack.events.of(VideoPublished, video_id)) == 1
    assert_problem(await stack.client.get(f"/api/v2/videos/{video_id}"), 404)
    assert_problem(await stack.client.get(f"/vod/{video_id}/master.m3u8"), 404)
    row = await job_row(stack.worker_settings, video_id)
    assert row is not None
    assert row.status == "deleted"


async def test_a_deletion_that_does_not_know_the_upload_still_removes_its_source(
    stack: Stack, clips: dict[str, bytes]
) -> None:
    """A delete right after an upload can reach the transcoder with no upload id (the
    gateway's catalog had not learnt it yet): the source the job was handed goes too."""
    video_id, upload_id = await upload(stack, clips["short"])
    await wait_status(stack, video_id, "ready")
    row = await job_row(stack.worker_settings, video_id)
    assert row is not None
    assert row.source_key == f"uploads/{upload_id}/source"
    deleted = VideoDeleted(video_id=video_id, user_id=stack.user.id)  # no upload_id
    await publish(stack.js, [deleted])
    await wait_empty(stack.store, f"vod/{video_id}/", f"uploads/{upload_id}/")
    await consumer_idle(stack.js, deletion.CONSUMER)
    assert not stack.events.dead


class CrashOnce:
    """The real store, but the first purge dies after its first prefix (a "crash")."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.crashed = False

    async def delete_prefix(self, prefix: str) -> int:
        removed = await self.store.delete_prefix(prefix)
        if not self.crashed:
            self.crashed = True
            raise StoreUnavailable("the store went away mid-deletion")
        return removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def some_media(store: ObjectStore) -> tuple[str, str]:
    video_id, upload_id = uuid.uuid4().hex, f"up-{uuid.uuid4().hex[:12]}"
    for key in (
        f"vod/{video_id}/master.m3u8",
        f"vod/{video_id}/240p/seg_00000.m4s",
        f"uploads/{upload_id}/source",
    ):
        await store.put(key, b"bytes")
    return video_id, upload_id


async def test_a_deletion_interrupted_mid_way_finishes_on_redelivery(
    stack_settings: Settings, store: ObjectStore, event_streams: JetStreamContext, seen: Events
) -> None:
    video_id, upload_id = await some_media(store)
    engine = create_engine(stack_settings.resolved_database_url)
    sessions = session_factory(engine)
    event = VideoDeleted(video_id=video_id, user_id="u1", upload_id=upload_id)
    crashing = cast(ObjectStore, CrashOnce(store))
    try:
        with pytest.raises(StoreUnavailable):
            await deletion.remove_video(sessions, crashing, event)
        assert await keys_under(store, f"uploads/{upload_id}/")  # half done
        row = await jobs.load(sessions, video_id)
        assert row is not None
        assert row.status == "deleted"  # the tombstone came first
        assert await deletion.remove_video(sessions, crashing, event)  # the redelivery
        assert not await keys_under(store, f"vod/{video_id}/", f"uploads/{upload_id}/")
        assert not await deletion.remove_video(sessions, store, event)  # claimed: skipped
    finally:
        await engine.dispose()

    # And through JetStream: the failed delivery is nak'ed, redelivered, and finishes.
    video_id, upload_id = await some_media(store)
    async with running(stack_settings) as component:
        component.worker._store = cast(ObjectStore, CrashOnce(component.worker.store))
        event = VideoDeleted(video_id=video_id, user_id="u1", upload_id=upload_id)
        await publish(event_streams, [event])
        await wait_empty(store, f"vod/{video_id}/", f"uploads/{upload_id}/")
        await consumer_idle(event_streams, deletion.CONSUMER)
    info = await event_streams.consumer_info("MEDIA", deletion.CONSUMER)
    assert info.delivered is not None
    assert info.delivered.consumer_seq >= 2  # one message, delivered twice
    assert not seen.dead


@pytest.mark.parametrize("source_known", [True, False], ids=["source-known", "source-unknown"])
async def test_a_transcode_that_ends_after_the_delete_leaves_nothing(
    stack: Stack, clips: dict[str, bytes], source_known: bool
) -> None:
    """The job's child is held (SIGSTOP) until the deletion has swept the store, so the
    job ends after the delete every time. Via the gateway, the deletion stops the job
    (this process runs it) and it ends quietly; with the job left running, as on another
    replica, and a delete that carries no upload id, the job completes — and the worker
    removes its output. The source goes at the delete either way (the job row names it)."""
    video_id, upload_id = await upload(stack, clips["long"])
    await stack.events.wait(
        lambda: bool(stack.events.of(TranscodeProgress, video_id)), "the job running"
    )
    stack.transcoder.worker.stop_deleted_jobs = source_known
    child = stack.transcoder.worker.children[video_id]
    os.kill(child.pid, signal.SIGSTOP)
    try:
        await wait_status(stack, video_id, "processing")
        if source_known:
            await delete_video(stack, video_id)
        else:
            await publish(stack.js, [VideoDeleted(video_id=video_id, user_id=stack.user.id)])
        await consumer_idle(stack.js, deletion.CONSUMER)
        row = await job_row(stack.worker_settings, video_id)
        assert row is not None
        assert row.status == "deleted"
        assert not await stack.store.exists(f"uploads/{upload_id}/source")
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone: the deletion stopped it
            os.kill(child.pid, signal.SIGCONT)
    await consumer_idle(stack.js, CONSUMER)  # the job ended (and was acked)
    await wait_empty(stack.store, f"vod/{video_id}/", f"uploads/{upload_id}/")
    assert not stack.events.of(TranscodeCompleted, video_id)
    assert not stack.events.of(VideoPublished, video_id)
    assert not stack.events.of(TranscodeFailed, video_id)
    assert_problem(await stack.client.get(f"/api/v2/videos/{video_id}"), 404)
    assert_problem(await stack.client.get(f"/vod/{video_id}/master.m3u8"), 404)
    row = await job_row(stack.worker_settings, video_id)
    assert row is not None
    assert row.status == "deleted"
    assert not stack.events.dead


async def test_a_request_delivered_after_the_delete_is_not_transcoded(stack: Stack) -> None:
    # A late copy of the request (a replay, or one queued behind a long job): its source
    # goes, and no video comes back.
    video_id, upload_id = uuid.uuid4().hex, f"up-{uuid.uuid4().hex[:12]}"
    await publish(stack.js, [VideoDeleted(video_id=video_id, user_id=stack.user.id)])
    await consumer_idle(stack.js, deletion.CONSUMER)
    source = f"uploads/{upload_id}/source"
    await stack.store.put(source, b"never transcoded")
    requested = TranscodeRequested(
        video_id=video_id, user_id=stack.user.id, source_key=source, origin="upload"
    )
    await publish(stack.js, [requested])
    await wait_empty(stack.store, source)
    await consumer_idle(stack.js, CONSUMER)
    assert not stack.events.of(TranscodeProgress, video_id)
    assert not stack.events.of(VideoPublished, video_id)


async def job_row(settings: Settings, video_id: str) -> jobs.TranscodeJob | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        return await jobs.load(session_factory(engine), video_id)
    finally:
        await engine.dispose()
