"""The uploader behind the gateway: finalizing exactly once, rejecting with reasons,
sweeping expired uploads — real NATS, SQLite/PostgreSQL, folder store and MinIO.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import update
from sqlalchemy.orm import InstrumentedAttribute

from common.store import MultipartUpload
from events.broker import create_broker
from events.catalog import (
    ChunkUploaded,
    TranscodeRequested,
    UploadCompleted,
    UploadCreated,
    UploadExpired,
    UploadRejected,
)
from events.envelope import new_event_id
from events.publisher import MSG_ID_HEADER, EventPublisher
from gateway.tus.layout import source_key
from gateway.tus.models import Upload
from tests.integration.test_tus_fixtures import (
    STORE_BACKENDS,
    MiB,
    StackFactory,
    UploadStack,
    auth,
    create,
    drained,
    forge_dimensions,
    head_offset,
    held_patch,
    make_mp4,
    meta,
    patch,
    sha256,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_all,
    upload_stack_fixture,  # noqa: F401 - fixture
    wait_until,
)
from uploader import ids
from uploader.finalize import finalize
from uploader.lifecycle import record_created
from uploader.models import State, UploaderUpload
from uploader.services import Services as UploaderServices
from uploader.sweeper import Sweeper

pytestmark = pytest.mark.integration


def count_publishes(stack: UploadStack) -> list[Any]:
    """Every event the uploader asks to publish (before JetStream's dedup)."""
    assert stack.uploader is not None
    published: list[Any] = []
    publisher = stack.uploader.publisher
    original = publisher.publish

    async def spy(event: Any, **kwargs: Any) -> Any:
        published.append(event)
        return await original(event, **kwargs)

    publisher.publish = spy  # type: ignore[method-assign]
    return published


async def uploader_row(stack: UploadStack, upload_id: str) -> UploaderUpload | None:
    async with stack.sessions() as session:
        return await session.get(UploaderUpload, upload_id, populate_existing=True)


async def status(stack: UploadStack, upload_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v2/upload/{upload_id}", headers=stack.alice.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_a_real_video_completes_once_even_when_its_completion_comes_twice(
    upload_stack: StackFactory, backend: str
) -> None:
    stack = await upload_stack.start(backend)
    published = count_publishes(stack)
    video = make_mp4()
    upload_id = await upload_all(stack, stack.alice, video, metadata=meta(filename="cat.mp4"))
    completed = await stack.events.wait_for(UploadCompleted, upload_id=upload_id)
    requested = await stack.events.wait_for(TranscodeRequested, video_id=completed.video_id)
    assert completed.video_id == ids.video_id(upload_id)
    assert completed.sha256 == sha256(video)
    assert completed.object_key == requested.source_key == source_key(upload_id)
    assert (completed.probe.width, completed.probe.height) == (64, 48)
    assert (requested.origin, requested.user_id, requested.title) == (
        "upload",
        stack.alice.id,
        "cat",
    )
    assert await stack.store.read(source_key(upload_id)) == video

    # The same completion again: redelivered as is (another Nats-Msg-Id gets it past
    # JetStream's duplicate window) and re-announced under a new event id.
    last = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    payload = msgspec.json.encode(last)
    again = msgspec.json.encode(msgspec.structs.replace(last, event_id=new_event_id()))
    for body in (payload, again):
        await stack.js.publish(last.subject(), body, headers={MSG_ID_HEADER: new_event_id()})
    await wait_until(lambda: drained(stack, "UPLOADS", "uploader-chunks"), what="redeliveries")
    assert [type(event).__name__ for event in published] == [
        "UploadCompleted",
        "TranscodeRequested",
    ]
    assert len(stack.events.of(UploadCompleted, upload_id=upload_id)) == 1
    assert len(stack.events.of(TranscodeRequested, video_id=completed.video_id)) == 1
    row = await uploader_row(stack, upload_id)
    assert row is not None
    assert (row.state, row.video_id, row.sha256) == (
        State.COMPLETED,
        completed.video_id,
        sha256(video),
    )


async def test_two_finalizers_at_once_make_one_video(upload_stack: StackFactory) -> None:
    """Two uploader replicas handed the same completion at the same moment."""
    stack = await upload_stack.start("local", with_uploader=False)
    video = make_mp4()
    upload_id = await upload_all(stack, stack.alice, video)
    created = await stack.events.wait_for(UploadCreated, upload_id=upload_id)
    last = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    broker = create_broker(stack.settings, name="test-finalizers")
    await broker.start()
    try:
        services = UploaderServices(
            settings=stack.settings,
            sessions=stack.sessions,
            store=stack.store,
            publisher=EventPublisher(broker, producer="uploader"),
        )
        stack.uploader = services
        published = count_publishes(stack)
        await record_created(services.sessions, created)
        outcomes = await asyncio.gather(
            finalize(services, last, upload_id, len(video)),
            finalize(services, last, upload_id, len(video)),
            return_exceptions=True,
        )
    finally:
        await broker.stop()
    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["ClaimBusy", "NoneType"]
    assert [type(event).__name__ for event in published] == [
        "UploadCompleted",
        "TranscodeRequested",
    ]
    # The loser's retry (its message is redelivered) finds the work done.
    await finalize(services, last, upload_id, len(video))
    assert len(published) == 2


@pytest.mark.parametrize("backend", STORE_BACKENDS)
@pytest.mark.parametrize(
    ("name", "make", "code"),
    [
        ("text.mp4", lambda: b"plain text, renamed to .mp4\n" * 200, "not_media"),
        ("huge.mp4", lambda: forge_dimensions(make_mp4(), 20000, 20000), "too_large_dimensions"),
        (
            "evil.m3u8",
            lambda: b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n",
            "not_media",
        ),
    ],
    ids=["text-as-mp4", "20000x20000-header", "hls-to-etc-passwd"],
)
async def test_hostile_uploads_are_rejected_with_a_reason(
    upload_stack: StackFactory, backend: str, name: str, make: Any, code: str
) -> None:
    stack = await upload_stack.start(backend)
    data: bytes = make()
    upload_id = await upload_all(stack, stack.alice, data, metadata=meta(filename=name))
    rejected = await stack.events.wait_for(UploadRejected, upload_id=upload_id)
    assert rejected.code == code
    assert rejected.user_id == stack.alice.id
    assert rejected.reason
    assert "Traceback" not in rejected.reason
    assert not stack.events.of(UploadCompleted, upload_id=upload_id)
    assert not stack.events.of(TranscodeRequested)
    # A rejected file is not kept (deleted right after the rejection is published).

    async def removed() -> bool:
        return not await stack.store.exists(source_key(upload_id))

    await wait_until(removed, what="the rejected file to be removed")

    async def shown() -> dict[str, Any] | None:
        current = await status(stack, upload_id)
        return current if current["state"] == "rejected" else None

    shown_status = await wait_until(shown, what="the status")
    assert shown_status["reason"] == rejected.reason
    assert rejected.offset == shown_status["offset"] == len(data)


async def test_an_empty_upload_is_rejected(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local")
    upload_id = await create(stack, stack.alice, 0)
    rejected = await stack.events.wait_for(UploadRejected, upload_id=upload_id)
    assert rejected.code == "empty"
    assert await head_offset(stack, stack.alice, upload_id) == 0


# --- expiry --------------------------------------------------------------------------


def sweeper(stack: UploadStack) -> Sweeper:
    assert stack.uploader is not None
    return Sweeper(stack.uploader, interval_s=3600, grace_s=0)


async def expired_in_uploader(stack: UploadStack, upload_id: str) -> bool:
    row = await uploader_row(stack, upload_id)
    return row is not None and row.expires_at is not None and row.expires_at < datetime.now(UTC)


async def expire_now(
    stack: UploadStack,
    model: type[Upload] | type[UploaderUpload],
    key: InstrumentedAttribute[str],
    upload_id: str,
) -> None:
    """Move an upload's expiry a second into the past in one component's table: what
    the clock does to an idle upload, without a short real expiry that a slow host
    could pass before the test's own PATCHes arrive (CI once took 2 s for a POST)."""
    async with stack.sessions.begin() as session:
        await session.execute(
            update(model)
            .where(key == upload_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_expired_uploads_are_swept_but_not_while_locked(
    upload_stack: StackFactory, backend: str
) -> None:
    stack = await upload_stack.start(backend, tus_read_timeout_s=60)
    data = bytes(range(256)) * (28 * 1024)  # 7 MiB: one part and a tail
    upload_id = await create(stack, stack.alice, 10 * MiB)
    assert (await patch(stack, stack.alice, upload_id, 0, data[: 6 * MiB])).status_code == 204
    assert (await patch(stack, stack.alice, upload_id, 6 * MiB, data[6 * MiB :])).status_code == 204

    async def folded() -> bool:
        # Folding a chunk slides the uploader's expiry: the move below must come after.
        row = await uploader_row(stack, upload_id)
        return row is not None and row.offset == 7 * MiB

    await wait_until(folded, what="the uploader to fold the last chunk")
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id)
    assert row is not None
    multipart = MultipartUpload(row.multipart_id, row.object_key)

    # A PATCH that started before the expiry and is still running holds the lock.
    async with held_patch(stack, stack.alice, upload_id, 7 * MiB, declared=MiB):
        await wait_until(lambda: _locked(stack, upload_id), what="the PATCH's lock")
        await expire_now(stack, UploaderUpload, UploaderUpload.upload_id, upload_id)
        assert await expired_in_uploader(stack, upload_id)
        assert await sweeper(stack).sweep_once() == 0
        assert [part.size for part in await stack.store.list_parts(multipart)] == [6 * MiB]
    await wait_until(lambda: _unlocked(stack, upload_id), what="the lock to be released")
    # The gateway's row too (its HEAD answers from it), once no lease write can follow.
    await expire_now(stack, Upload, Upload.id, upload_id)
    # Not swept yet: the status already says expired, with the bytes still held.
    before_sweep = await status(stack, upload_id)
    assert (before_sweep["state"], before_sweep["offset"]) == ("expired", 7 * MiB)
    assert (before_sweep["reason_code"], before_sweep["expires_at"]) == ("expired", None)

    assert await sweeper(stack).sweep_once() == 1
    expired = await stack.events.wait_for(UploadExpired, upload_id=upload_id)
    assert (expired.offset, expired.size, expired.user_id) == (7 * MiB, 10 * MiB, stack.alice.id)
    assert [info async for info in stack.store.list(f"uploads/{upload_id}/")] == []
    assert await stack.store.list_multipart(source_key(upload_id)) == []
    row_after = await uploader_row(stack, upload_id)
    assert row_after is not None
    assert row_after.state == State.EXPIRED
    head = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.status_code == 410

    async def shown() -> bool:
        return bool((await status(stack, upload_id))["state"] == "expired")

    await wait_until(shown, what="the expiry in the status")
    assert await sweeper(stack).sweep_once() == 0  # nothing twice


async def _locked(stack: UploadStack, upload_id: str) -> bool:
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id, populate_existing=True)
    return row is not None and row.lock_token is not None


async def _unlocked(stack: UploadStack, upload_id: str) -> bool:
    return not await _locked(stack, upload_id)


async def test_a_complete_but_unannounced_upload_is_finalized_not_swept(
    upload_stack: StackFactory,
) -> None:
    stack = await upload_stack.start("local", tus_expiry_s=1)
    video = make_mp4()
    upload_id = await create(stack, stack.alice, len(video))
    # The bytes arrive, but their completion event is lost (the bus failed at the
    # worst moment, and the client never came back): simulate by writing the part
    # behind the gateway's back.
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id)
    assert row is not None
    await stack.store.upload_part(MultipartUpload(row.multipart_id, row.object_key), 1, video)
    await wait_until(lambda: expired_in_uploader(stack, upload_id), what="expiry")
    assert await sweeper(stack).sweep_once() == 0
    completed = await stack.events.wait_for(UploadCompleted, upload_id=upload_id)
    assert completed.sha256 == sha256(video)
    assert not stack.events.of(UploadExpired, upload_id=upload_id)


async def test_a_cancelled_upload_is_not_swept(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local", tus_expiry_s=1)
    upload_id = await create(stack, stack.alice, 100)
    assert (
        await stack.client.delete(f"/files/{upload_id}", headers=auth(stack.alice))
    ).status_code == 204

    async def cancelled() -> bool:
        row = await uploader_row(stack, upload_id)
        return row is not None and row.state == State.CANCELLED

    await wait_until(cancelled, what="the uploader to see the cancellation")
    await wait_until(lambda: expired_in_uploader(stack, upload_id), what="expiry")
    assert await sweeper(stack).sweep_once() == 0
    assert not stack.events.of(UploadExpired, upload_id=upload_id)
