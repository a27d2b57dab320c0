"""The official tus client (tuspy) against the gateway, on the folder store and MinIO.

Durability is checked end to end: the uploader assembles what the gateway stored and
reports its SHA-256 in ``upload.completed``, which must equal the file's. On MinIO
this also proves the 5 MiB part rule is respected (1 MiB chunks become parts of at
least 5 MiB plus a tail object; S3 refuses anything else at assembly).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from tusclient import client as tus_client

from common.store import MIN_PART_SIZE, MultipartUpload
from events.catalog import ChunkUploaded, TranscodeRequested, UploadCompleted
from gateway.tus.layout import source_key
from gateway.tus.models import Upload
from tests.integration.test_tus_fixtures import (
    STORE_BACKENDS,
    MiB,
    StackFactory,
    UploadStack,
    auth,
    checksum_header,
    create,
    cut_patch,
    head_offset,
    padded_mp4,
    sha256,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
    wait_until,
    write,
)

pytestmark = pytest.mark.integration


def tuspy_upload(
    stack: UploadStack,
    path: Path,
    chunk_size: int,
    *,
    url: str | None = None,
    checksum: bool = False,
    metadata: dict[str, str] | None = None,
) -> str:
    """Upload (or resume, with ``url``) ``path`` with tuspy; returns the upload URL."""
    client = tus_client.TusClient(stack.files(), headers=stack.alice.headers)
    uploader = client.uploader(
        file_path=str(path),
        url=url,
        chunk_size=chunk_size,
        metadata=metadata or {"filename": path.name, "title": "tuspy upload"},
        upload_checksum=checksum,
    )
    uploader.upload()
    return str(uploader.url)


async def completed(stack: UploadStack, upload_id: str) -> UploadCompleted:
    event: UploadCompleted = await stack.events.wait_for(UploadCompleted, upload_id=upload_id)
    return event


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_tuspy_uploads_in_chunks_and_the_object_matches(
    upload_stack: StackFactory, backend: str, tmp_path: Path
) -> None:
    stack = await upload_stack.start(backend)
    data = padded_mp4(11 * MiB + 12345)
    path = write(tmp_path / "clip.mp4", data)
    url = await asyncio.to_thread(tuspy_upload, stack, path, 4 * MiB, checksum=True)
    upload_id = url.rsplit("/", 1)[1]
    event = await completed(stack, upload_id)
    assert event.sha256 == sha256(data)
    assert event.size == len(data)
    assert (event.filename, event.title) == ("clip.mp4", "tuspy upload")
    assert (event.probe.video_codec, event.probe.audio_codec) == ("h264", "aac")
    assert await stack.store.read(source_key(upload_id)) == data
    chunks = stack.events.of(ChunkUploaded, upload_id=upload_id)
    assert [chunk.offset for chunk in chunks] == [0, 4 * MiB, 8 * MiB]
    assert all(chunk.checksum.startswith("sha1:") for chunk in chunks)


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_one_mib_chunks_respect_the_part_minimum(
    upload_stack: StackFactory, backend: str, tmp_path: Path
) -> None:
    stack = await upload_stack.start(backend)
    data = padded_mp4(12 * MiB + 999)
    path = write(tmp_path / "small-chunks.mp4", data)
    # Stop before the end to look at the store: parts >= 5 MiB, the rest in a tail.
    client = tus_client.TusClient(stack.files(), headers=stack.alice.headers)
    uploader = client.uploader(file_path=str(path), chunk_size=MiB)
    await asyncio.to_thread(uploader.upload, 9 * MiB)
    upload_id = str(uploader.url).rsplit("/", 1)[1]
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id)
    assert row is not None
    parts = await stack.store.list_parts(MultipartUpload(row.multipart_id, row.object_key))
    # Chunks wait in the tail until it reaches 5 MiB, which then becomes a part.
    assert [part.size for part in parts] == [5 * MiB]
    tails = [info async for info in stack.store.list(f"uploads/{upload_id}/tail-")]
    assert [(info.key.rsplit("/", 1)[1], info.size) for info in tails] == [
        (f"tail-{5 * MiB:020d}.part", 4 * MiB)
    ]
    assert all(part.size >= MIN_PART_SIZE for part in parts)
    await asyncio.to_thread(uploader.upload)
    event = await completed(stack, upload_id)
    assert event.sha256 == sha256(data)
    assert [info async for info in stack.store.list(f"uploads/{upload_id}/tail-")] == []


async def wait_unlocked(stack: UploadStack, upload_id: str) -> None:
    async def unlocked() -> bool:
        async with stack.sessions() as session:
            row = await session.get(Upload, upload_id, populate_existing=True)
        return row is not None and row.lock_token is None

    await wait_until(unlocked, what="the cut PATCH to end")


@pytest.mark.parametrize("backend", STORE_BACKENDS)
@pytest.mark.parametrize("cut_at", [3 * MiB + 5, 6 * MiB + 17])
async def test_resume_after_a_cut_patch(
    upload_stack: StackFactory, backend: str, cut_at: int, tmp_path: Path
) -> None:
    """Cut mid-body (below and above a part): HEAD says what is durable; tuspy resumes."""
    stack = await upload_stack.start(backend)
    data = padded_mp4(10 * MiB)
    path = write(tmp_path / "cut.mp4", data)
    upload_id = await create(stack, stack.alice, len(data))
    await cut_patch(stack, stack.alice, upload_id, 0, data[:cut_at], declared=len(data))
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
    assert chunk.offset + chunk.length == cut_at
    assert await head_offset(stack, stack.alice, upload_id) == cut_at
    # The chunk is durable before the cut PATCH's handler lets go of the upload's lock;
    # tuspy does not retry a 423 (tus-js-client would), so resume once it is free.
    await wait_unlocked(stack, upload_id)
    await asyncio.to_thread(tuspy_upload, stack, path, 4 * MiB, url=stack.files(upload_id))
    event = await completed(stack, upload_id)
    assert event.sha256 == sha256(data)
    await stack.events.wait_for(TranscodeRequested, video_id=event.video_id)
    assert len(stack.events.of(TranscodeRequested, video_id=event.video_id)) == 1


@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_a_cut_patch_with_a_checksum_keeps_nothing(
    upload_stack: StackFactory, backend: str
) -> None:
    stack = await upload_stack.start(backend, with_uploader=False)
    data = b"c" * (6 * MiB)
    upload_id = await create(stack, stack.alice, 2 * len(data))
    extra = {"Upload-Checksum": checksum_header("sha256", data)}
    await cut_patch(stack, stack.alice, upload_id, 0, data[: 5 * MiB], len(data), extra)
    await wait_unlocked(stack, upload_id)
    assert await head_offset(stack, stack.alice, upload_id) == 0
    assert [info async for info in stack.store.list(f"uploads/{upload_id}/")] == []
    response = await stack.client.patch(
        f"/files/{upload_id}",
        content=data,
        headers=auth(
            stack.alice,
            **{
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
                **extra,
            },
        ),
    )
    assert response.headers["upload-offset"] == str(len(data))


@pytest.mark.parametrize("backend", ["s3"])
async def test_smoke_64_mib_in_8_mib_chunks_to_minio(
    upload_stack: StackFactory, backend: str, tmp_path: Path
) -> None:
    """The real path: tuspy → gateway → MinIO parts → uploader → upload.completed."""
    stack = await upload_stack.start(backend)
    data = padded_mp4(64 * MiB)
    path = write(tmp_path / "big.mp4", data)
    started = time.perf_counter()
    url = await asyncio.to_thread(tuspy_upload, stack, path, 8 * MiB)
    elapsed = time.perf_counter() - started
    upload_id = url.rsplit("/", 1)[1]
    event = await completed(stack, upload_id)
    assert event.sha256 == sha256(data)
    assert event.size == 64 * MiB
    print(f"\n64 MiB via tuspy to MinIO: {64 / elapsed:.1f} MiB/s ({elapsed:.2f} s)")
