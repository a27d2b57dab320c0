"""The simple upload API (/api/v2/upload/*) on the tus engine, and the upload status.

Same engine, same rules: offset mismatch 409, another user's upload 404, bytes
durable before the 200; ``upload_url`` is the tus URL of the same upload. The status
(GET /api/v2/upload/{id}) follows an upload from ``uploading`` to ``ready`` with its
video id, or to ``rejected`` with the reason users see.
"""

from __future__ import annotations

import httpx
import pytest

from events.catalog import TranscodeRequested, UploadCompleted, UploadRejected
from tests.integration.test_tus_fixtures import (
    MiB,
    StackFactory,
    UploadStack,
    auth,
    head_offset,
    padded_mp4,
    sha256,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
    wait_until,
)

pytestmark = pytest.mark.integration


async def init(stack: UploadStack, size: int, **extra: str) -> dict[str, object]:
    response = await stack.client.post(
        "/api/v2/upload/init",
        json={"filename": "clip.mp4", "size": size, "title": "Clip", **extra},
        headers=stack.alice.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def chunk(
    stack: UploadStack, upload_id: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    return await stack.client.post(
        "/api/v2/upload/chunk",
        params={"upload_id": upload_id, "offset": offset},
        content=data,
        headers={
            **stack.alice.headers,
            "Content-Type": "application/octet-stream",
            **headers,
        },
    )


async def status(stack: UploadStack, upload_id: str) -> dict[str, object]:
    response = await stack.client.get(f"/api/v2/upload/{upload_id}", headers=stack.alice.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.mark.parametrize("backend", ["local"])
async def test_init_chunk_complete_then_ready(upload_stack: StackFactory, backend: str) -> None:
    stack = await upload_stack.start(backend)
    data = padded_mp4(6 * MiB + 100)
    created = await init(stack, len(data), description="from the simple API")
    upload_id = str(created["upload_id"])
    assert created["chunk_size"] == stack.settings.tus_chunk_size
    assert created["upload_url"] == stack.files(upload_id)
    assert created["max_size"] == stack.settings.tus_max_size
    first = await chunk(stack, upload_id, 0, data[: 3 * MiB])
    assert first.status_code == 200, first.text
    assert first.json() == {
        "upload_id": upload_id,
        "offset": 3 * MiB,
        "size": len(data),
        "complete": False,
    }
    current = await status(stack, upload_id)
    assert (current["state"], current["offset"], current["size"]) == (
        "uploading",
        3 * MiB,
        len(data),
    )
    # The tus URL shows the same upload.
    assert await head_offset(stack, stack.alice, upload_id) == 3 * MiB
    # "complete" before every byte arrived: 409 with the offset.
    early = await stack.client.post(
        "/api/v2/upload/complete", json={"upload_id": upload_id}, headers=stack.alice.headers
    )
    assert early.status_code == 409
    assert early.headers["upload-offset"] == str(3 * MiB)
    last = await chunk(stack, upload_id, 3 * MiB, data[3 * MiB :])
    assert last.json()["complete"] is True
    done = await stack.client.post(
        "/api/v2/upload/complete", json={"upload_id": upload_id}, headers=stack.alice.headers
    )
    assert done.status_code == 200
    assert done.json()["state"] in ("processing", "ready")
    completed = await stack.events.wait_for(UploadCompleted, upload_id=upload_id)
    assert completed.sha256 == sha256(data)
    assert completed.description == "from the simple API"

    async def ready() -> dict[str, object] | None:
        current = await status(stack, upload_id)
        return current if current["state"] == "ready" else None

    final = await wait_until(ready, what="the status to become ready")
    assert final["video_id"] == completed.video_id
    assert final["offset"] == len(data)
    requested = await stack.events.wait_for(TranscodeRequested, video_id=completed.video_id)
    assert requested.title == "Clip"


@pytest.mark.parametrize("backend", ["local"])
async def test_simple_api_refusals(upload_stack: StackFactory, backend: str) -> None:
    stack = await upload_stack.start(backend, with_uploader=False)
    upload_id = str((await init(stack, 10))["upload_id"])
    assert (await chunk(stack, upload_id, 0, b"01234")).status_code == 200
    mismatch = await chunk(stack, upload_id, 2, b"x")
    assert mismatch.status_code == 409
    assert mismatch.headers["content-type"] == "application/problem+json"
    assert (
        await chunk(stack, upload_id, 5, b"x", **{"Content-Type": "text/plain"})
    ).status_code == 415
    bob = await stack.client.post(
        "/api/v2/upload/chunk",
        params={"upload_id": upload_id, "offset": 5},
        content=b"x",
        headers={**stack.bob.headers, "Content-Type": "application/octet-stream"},
    )
    assert bob.status_code == 404
    bad_id = await stack.client.post(
        "/api/v2/upload/chunk",
        params={"upload_id": "../../etc/passwd", "offset": 0},
        content=b"x",
        headers={**stack.alice.headers, "Content-Type": "application/octet-stream"},
    )
    assert bad_id.status_code == 400
    for body in (
        {"filename": "../x.mp4", "size": 1},
        {"filename": "a.mp4", "size": -1},
        {"filename": "a.mp4", "size": stack.settings.tus_max_size + 1},
        {"filename": "a.mp4", "size": 1, "title": "bad\ntitle"},
        {"filename": "a.mp4", "size": 1, "unknown": 1},
        {"filename": "", "size": 1},
    ):
        response = await stack.client.post(
            "/api/v2/upload/init", json=body, headers=stack.alice.headers
        )
        assert response.status_code in (400, 413), (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (
        await stack.client.post("/api/v2/upload/init", json={"filename": "a", "size": 1})
    ).status_code == 401
    assert (
        await stack.client.get(f"/api/v2/upload/{upload_id}", headers=stack.bob.headers)
    ).status_code == 404


@pytest.mark.parametrize("backend", ["local"])
async def test_status_shows_the_rejection_reason(upload_stack: StackFactory, backend: str) -> None:
    stack = await upload_stack.start(backend)
    text = b"this is not a video, only text renamed to .mp4\n" * 100
    upload_id = str((await init(stack, len(text)))["upload_id"])
    assert (await chunk(stack, upload_id, 0, text)).json()["complete"] is True
    rejected = await stack.events.wait_for(UploadRejected, upload_id=upload_id)
    assert rejected.code == "not_media"

    async def shown() -> dict[str, object] | None:
        current = await status(stack, upload_id)
        return current if current["state"] == "rejected" else None

    final = await wait_until(shown, what="the rejection in the status")
    assert final["reason_code"] == "not_media"
    assert final["reason"] == rejected.reason
    assert "not a video" in str(final["reason"])


@pytest.mark.parametrize("backend", ["local"])
async def test_a_cancelled_upload_shows_as_cancelled(
    upload_stack: StackFactory, backend: str
) -> None:
    stack = await upload_stack.start(backend)
    upload_id = str((await init(stack, 100))["upload_id"])
    assert (await chunk(stack, upload_id, 0, b"x" * 40)).status_code == 200
    response = await stack.client.delete(f"/files/{upload_id}", headers=auth(stack.alice))
    assert response.status_code == 204

    async def cancelled() -> dict[str, object] | None:
        current = await status(stack, upload_id)
        return current if current["state"] == "cancelled" else None

    final = await wait_until(cancelled, what="the cancellation in the status")
    # What had arrived when it was cancelled (the bytes themselves are gone).
    assert (final["offset"], final["size"]) == (40, 100)


async def test_openapi_documents_the_upload_api(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local", with_uploader=False)
    spec = (await stack.client.get("/schema/openapi.json")).json()
    chunk_op = spec["paths"]["/api/v2/upload/chunk"]["post"]
    body = chunk_op["requestBody"]["content"]["application/octet-stream"]["schema"]
    assert body == {"type": "string", "format": "binary"}
    names = {parameter["name"] for parameter in chunk_op["parameters"]}
    assert {"upload_id", "offset"} <= names
    assert "/api/v2/upload/init" in spec["paths"]
    assert "/api/v2/upload/complete" in spec["paths"]
    assert "/api/v2/upload/{upload_id}" in spec["paths"]
    assert "/files" in spec["paths"] or "/files/" in spec["paths"]
