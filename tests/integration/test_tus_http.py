"""tus 1.0 at /files/ over real HTTP: every rule of RELIABILITY.md "tus uploads".

The gateway runs under uvicorn with the real app (auth, CORS, errors), on SQLite and
PostgreSQL, with the folder store (the S3 path: test_tus_s3.py). Each refusal is
checked for its status *and* for leaving the upload unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import struct
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from common.store import ObjectNotFound
from events.catalog import ChunkUploaded, UploadCreated, UploadRejected
from gateway.tus import engine, settling
from gateway.tus.layout import source_key
from gateway.tus.models import Upload
from tests.integration.test_tus_fixtures import (
    MiB,
    StackFactory,
    UploadStack,
    auth,
    checksum_header,
    create,
    cut_patch,
    head_offset,
    held_patch,
    meta,
    patch,
    store_choices_fixture,  # noqa: F401 - fixture
    upload_stack_fixture,  # noqa: F401 - fixture
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(upload_stack: StackFactory) -> UploadStack:
    return await upload_stack.start("local", with_uploader=False)


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert "Traceback" not in response.text
    detail: str = response.json()["detail"]
    return detail


# --- discovery and creation ------------------------------------------------------------


async def test_options_advertises_the_server_without_auth(stack: UploadStack) -> None:
    response = await stack.client.options("/files/")
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-max-size"] == str(20 * 1024**3)
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "checksum",
        "expiration",
    }
    assert response.headers["tus-checksum-algorithm"] == "sha1,sha256"


async def test_every_other_request_needs_a_token(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    for method, path in (
        ("POST", "/files/"),
        ("HEAD", f"/files/{upload_id}"),
        ("PATCH", f"/files/{upload_id}"),
        ("DELETE", f"/files/{upload_id}"),
    ):
        response = await stack.client.request(method, path, headers={"Tus-Resumable": "1.0.0"})
        assert response.status_code == 401, (method, response.text)
        assert response.headers["tus-resumable"] == "1.0.0"
    forged = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoieCJ9."}
    response = await stack.client.post("/files/", headers={**forged, "Upload-Length": "1"})
    assert response.status_code == 401


async def test_creation_answers_an_absolute_location_and_an_expiry(stack: UploadStack) -> None:
    response = await stack.client.post(
        "/files/",
        headers=auth(
            stack.alice,
            **{"Upload-Length": "100", "Upload-Metadata": meta(filename="a.mp4", title="T")},
        ),
    )
    assert response.status_code == 201
    assert response.headers["location"].startswith(f"{stack.settings.public_url}/files/")
    assert response.headers["upload-expires"].endswith(" GMT")
    upload_id = response.headers["location"].rsplit("/", 1)[1]
    created = await stack.events.wait_for(UploadCreated, upload_id=upload_id)
    assert (created.user_id, created.size, created.filename, created.title) == (
        stack.alice.id,
        100,
        "a.mp4",
        "T",
    )
    head = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.status_code == 200
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == "100"
    assert head.headers["cache-control"] == "no-store"
    assert head.headers["upload-expires"] == response.headers["upload-expires"]
    assert base64.b64decode(head.headers["upload-metadata"].split(",")[0].split(" ")[1]) == b"a.mp4"


async def test_creation_with_upload_stores_the_first_chunk(stack: UploadStack) -> None:
    response = await stack.client.post(
        "/files/",
        content=b"hello",
        headers=auth(
            stack.alice,
            **{"Upload-Length": "10", "Content-Type": "application/offset+octet-stream"},
        ),
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == "5"
    upload_id = response.headers["location"].rsplit("/", 1)[1]
    assert await head_offset(stack, stack.alice, upload_id) == 5
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
    assert (chunk.offset, chunk.length, chunk.complete) == (0, 5, False)


async def test_upload_length_above_the_maximum_is_413_before_reading(
    stack: UploadStack,
) -> None:
    too_big = str(stack.settings.tus_max_size + 1)
    detail = problem(
        await stack.client.post("/files/", headers=auth(stack.alice, **{"Upload-Length": too_big})),
        413,
    )
    assert "Tus-Max-Size" in detail

    # With a (claimed) 1 GiB creation body that never comes, the answer comes at once.
    def raw() -> bytes:
        import socket

        host, port = stack.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                (
                    f"POST /files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{stack.alice.token}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {too_big}\r\n"
                    "Content-Type: application/offset+octet-stream\r\n"
                    f"Content-Length: {1024**3}\r\n\r\n"
                ).encode()
            )
            return sock.recv(65536)

    answer = await asyncio.to_thread(raw)
    assert answer.startswith(b"HTTP/1.1 413")
    assert not stack.events.of(UploadCreated)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1"}, 400),
        ({"Upload-Defer-Length": "2"}, 400),
        ({"Upload-Length": "-5"}, 400),
        ({"Upload-Length": "10", "Upload-Concat": "final;/files/../../etc/passwd"}, 400),
        ({"Upload-Length": "10", "Tus-Resumable": "0.2.2"}, 412),
        ({"Upload-Length": "10", "Upload-Metadata": "filename !!!"}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": meta(filename="../../etc/passwd")}, 400),
        (
            {
                "Upload-Length": "10",
                "Upload-Metadata": meta(title="a", filename="b") + ",title YQ==",
            },
            400,
        ),
        ({"Upload-Length": "10", "Upload-Metadata": "title " + "A" * 40_000}, 400),
    ],
)
async def test_bad_creations_are_refused(
    stack: UploadStack, headers: dict[str, str], status: int
) -> None:
    response = await stack.client.post("/files/", headers={**auth(stack.alice), **headers})
    problem(response, status)
    if status == 412:
        assert response.headers["tus-version"] == "1.0.0"
    assert not stack.events.of(UploadCreated)


# --- PATCH ---------------------------------------------------------------------------


async def test_patch_appends_and_head_follows(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    response = await patch(stack, stack.alice, upload_id, 0, b"01234")
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "5"
    assert response.headers["upload-expires"].endswith(" GMT")
    assert await head_offset(stack, stack.alice, upload_id) == 5
    response = await patch(stack, stack.alice, upload_id, 5, b"56789")
    assert response.headers["upload-offset"] == "10"
    last = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    assert (last.offset, last.length) == (5, 5)
    # A finished upload: PATCH at its end is a no-op, anywhere else a conflict.
    assert (await patch(stack, stack.alice, upload_id, 10, b"")).status_code == 204
    problem(await patch(stack, stack.alice, upload_id, 5, b"x"), 409)


async def test_offset_mismatch_is_409_and_changes_nothing(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    assert (await patch(stack, stack.alice, upload_id, 0, b"0123")).status_code == 204
    for wrong in (0, 3, 5, 9):
        response = await patch(stack, stack.alice, upload_id, wrong, b"xx")
        problem(response, 409)
        assert response.headers["upload-offset"] == "4"
    assert await head_offset(stack, stack.alice, upload_id) == 4


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/octet-stream"}, 415),
        ({"Content-Type": "text/plain"}, 415),
        ({"Tus-Resumable": "1.0"}, 412),
        ({"Upload-Offset": "-1"}, 400),
        ({"Upload-Offset": "abc"}, 400),
        ({"Upload-Checksum": "md5 AAAAAAAAAAAAAAAAAAAAAA=="}, 400),
        ({"Upload-Length": "11"}, 400),  # a known length cannot change
        ({"Upload-Concat": "final;/files/../x"}, 400),
    ],
)
async def test_bad_patches_are_refused_and_change_nothing(
    stack: UploadStack, headers: dict[str, str], status: int
) -> None:
    upload_id = await create(stack, stack.alice, 10)
    response = await patch(stack, stack.alice, upload_id, 0, b"abc", **headers)
    problem(response, status)
    assert await head_offset(stack, stack.alice, upload_id) == 0


async def test_a_body_longer_than_the_upload_is_cut_at_its_end(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    response = await patch(stack, stack.alice, upload_id, 0, b"0123456789" + b"X" * 5000)
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "10"
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    assert chunk.length == 10


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
async def test_checksums(stack: UploadStack, algorithm: str) -> None:
    upload_id = await create(stack, stack.alice, 8)
    good = checksum_header(algorithm, b"abcd")
    response = await patch(stack, stack.alice, upload_id, 0, b"abcd", **{"Upload-Checksum": good})
    assert response.status_code == 204
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
    assert chunk.checksum == f"{algorithm}:{hashlib.new(algorithm, b'abcd').hexdigest()}"
    bad = checksum_header(algorithm, b"not this")
    response = await patch(stack, stack.alice, upload_id, 4, b"efgh", **{"Upload-Checksum": bad})
    assert problem(response, 460)
    assert await head_offset(stack, stack.alice, upload_id) == 4


async def test_deferred_length(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, None)
    head = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.headers["upload-defer-length"] == "1"
    assert "upload-length" not in head.headers
    assert (await patch(stack, stack.alice, upload_id, 0, b"abc")).status_code == 204
    # Declaring a length below what is stored is refused; then the real one is set.
    problem(await patch(stack, stack.alice, upload_id, 3, b"", **{"Upload-Length": "2"}), 400)
    response = await patch(stack, stack.alice, upload_id, 3, b"de", **{"Upload-Length": "5"})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "5"
    head = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.headers["upload-length"] == "5"
    await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    created = await stack.events.wait_for(UploadCreated, upload_id=upload_id)
    assert created.size == -1


async def test_x_http_method_override(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 4)
    response = await stack.client.post(
        f"/files/{upload_id}",
        content=b"ab",
        headers=auth(
            stack.alice,
            **{
                "X-HTTP-Method-Override": "PATCH",
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        ),
    )
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "2"
    problem(
        await stack.client.post(
            f"/files/{upload_id}", headers=auth(stack.alice, **{"X-HTTP-Method-Override": "GET"})
        ),
        400,
    )


# --- ownership and ids -----------------------------------------------------------------


async def test_another_users_upload_is_404_everywhere(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    bob = stack.bob
    assert (await stack.client.head(f"/files/{upload_id}", headers=auth(bob))).status_code == 404
    problem(await patch(stack, bob, upload_id, 0, b"x"), 404)
    problem(await stack.client.delete(f"/files/{upload_id}", headers=auth(bob)), 404)
    assert (
        await stack.client.get(f"/api/v2/upload/{upload_id}", headers=bob.headers)
    ).status_code == 404
    assert await head_offset(stack, stack.alice, upload_id) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/files/..%2F..%2Fetc%2Fpasswd",
        "/files/%2e%2e",
        "/files/0123456789abcdef0123456789abcdeX",
        "/files/0123456789abcdef0123456789abcdef%00",
        "/files/" + "a" * 300,
    ],
)
async def test_ids_with_traversal_are_not_found(stack: UploadStack, path: str) -> None:
    url = httpx.URL(stack.url).copy_with(raw_path=path.encode())
    response = await stack.client.head(url, headers=auth(stack.alice))
    assert response.status_code == 404
    response = await stack.client.patch(
        url,
        content=b"x",
        headers=auth(
            stack.alice,
            **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        ),
    )
    assert response.status_code == 404


# --- interruptions, locks ----------------------------------------------------------------


async def test_a_cut_patch_keeps_what_arrived_and_the_upload_resumes(stack: UploadStack) -> None:
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB
    upload_id = await create(stack, stack.alice, len(data))
    await cut_patch(stack, stack.alice, upload_id, 0, data[: 3 * MiB + 7], declared=len(data))
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
    assert (chunk.offset, chunk.length) == (0, 3 * MiB + 7)
    offset = await head_offset(stack, stack.alice, upload_id)
    assert offset == 3 * MiB + 7
    # The chunk is durable (and announced) before the cut PATCH's handler lets go of
    # the upload's lock; until then a new PATCH is rightly answered 423.
    await wait_until(lambda: _unlocked(stack, upload_id), what="the cut PATCH to release its lock")
    response = await patch(stack, stack.alice, upload_id, offset, data[offset:])
    assert response.headers["upload-offset"] == str(len(data))


async def test_a_reset_connection_keeps_what_arrived(stack: UploadStack) -> None:
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB
    upload_id = await create(stack, stack.alice, len(data))
    sent = 2 * MiB + 3
    async with held_patch(stack, stack.alice, upload_id, 0, data[:sent], len(data)) as sock:
        await wait_until(lambda: _locked(stack, upload_id), what="the PATCH to start")
        # RST instead of FIN: whatever the kernels still held in flight is lost.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await wait_until(lambda: _unlocked(stack, upload_id), what="the reset PATCH to end")
    offset = await head_offset(stack, stack.alice, upload_id)
    assert 0 <= offset <= sent  # bytes may be lost, never invented
    if offset:
        chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
        assert (chunk.offset, chunk.length) == (0, offset)
    response = await patch(stack, stack.alice, upload_id, offset, data[offset:])
    assert response.headers["upload-offset"] == str(len(data))


async def test_a_cut_patch_with_a_checksum_keeps_nothing(stack: UploadStack) -> None:
    data = b"z" * (2 * MiB)
    upload_id = await create(stack, stack.alice, len(data))
    checksum = {"Upload-Checksum": checksum_header("sha256", data)}
    await cut_patch(
        stack, stack.alice, upload_id, 0, data[:MiB], declared=len(data), extra=checksum
    )
    # The lock is released once the server saw the cut; then the offset is still 0.
    await wait_until(lambda: _unlocked(stack, upload_id), what="the cut PATCH to release its lock")
    assert await head_offset(stack, stack.alice, upload_id) == 0
    assert not stack.events.of(ChunkUploaded, upload_id=upload_id)


async def _unlocked(stack: UploadStack, upload_id: str) -> bool:
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id, populate_existing=True)
    return row is not None and row.lock_token is None


async def test_a_second_patch_is_423_while_one_is_running(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 2 * MiB)
    async with held_patch(stack, stack.alice, upload_id, 0, b"a" * 1000, declared=MiB):
        await wait_until(lambda: _locked(stack, upload_id), what="the held PATCH's lock")
        response = await patch(stack, stack.alice, upload_id, 0, b"b")
        problem(response, 423)
        assert int(response.headers["retry-after"]) >= 1
        problem(await stack.client.delete(f"/files/{upload_id}", headers=auth(stack.alice)), 423)
    # The held PATCH's client hung up: its 1000 bytes are kept and the lock is free.
    await wait_until(lambda: _unlocked(stack, upload_id), what="the lock to be released")
    assert await head_offset(stack, stack.alice, upload_id) == 1000
    assert (await patch(stack, stack.alice, upload_id, 1000, b"c")).status_code == 204


async def _locked(stack: UploadStack, upload_id: str) -> bool:
    return not await _unlocked(stack, upload_id)


async def test_a_dead_patchs_lock_frees_when_its_lease_runs_out(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)

    async def dead_lease(until: datetime) -> None:
        # A gateway that died mid-PATCH leaves its lease behind and never renews it.
        async with stack.sessions.begin() as session:
            await session.execute(
                update(Upload)
                .where(Upload.id == upload_id)
                .values(lock_token="dead", lock_until=until)
            )

    await dead_lease(datetime.now(UTC) + timedelta(hours=1))
    problem(await patch(stack, stack.alice, upload_id, 0, b"abc"), 423)
    await dead_lease(datetime.now(UTC) - timedelta(seconds=1))  # ran out
    assert (await patch(stack, stack.alice, upload_id, 0, b"abc")).status_code == 204
    assert await head_offset(stack, stack.alice, upload_id) == 3


async def test_one_patch_at_a_time_across_two_gateways(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local", with_uploader=False, gateways=2)
    other = stack.extra_urls[0]
    upload_id = await create(stack, stack.alice, 2 * MiB)
    async with held_patch(stack, stack.alice, upload_id, 0, b"a" * 10, declared=MiB):
        await wait_until(lambda: _locked(stack, upload_id), what="the first gateway's lock")
        async with httpx.AsyncClient(base_url=other) as client:
            response = await client.patch(
                f"/files/{upload_id}",
                content=b"b",
                headers=auth(
                    stack.alice,
                    **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
                ),
            )
            problem(response, 423)
    await wait_until(lambda: _unlocked(stack, upload_id), what="the lock to be released")
    async with httpx.AsyncClient(base_url=other) as client:
        head = await client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    assert head.headers["upload-offset"] == "10"


async def _lock_token(stack: UploadStack, upload_id: str) -> str | None:
    async with stack.sessions() as session:
        row = await session.get(Upload, upload_id, populate_existing=True)
    assert row is not None
    return row.lock_token


def linger_for(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Park answered locks for seconds rather than 0.25 s: a loaded CI host can take
    longer than that between a test's two requests, and the lock would be gone."""
    monkeypatch.setattr(settling, "LINGER_S", seconds)


async def test_the_next_patch_here_takes_the_lock_over_and_events_keep_their_order(
    stack: UploadStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answered chunk's lock waits for the upload's next PATCH (gateway/tus/settling.py)
    instead of a release and an acquire; the last chunk frees it."""
    linger_for(monkeypatch, 60.0)
    upload_id = await create(stack, stack.alice, 30)
    tokens = []
    for offset in (0, 10, 20):
        response = await patch(stack, stack.alice, upload_id, offset, bytes([65 + offset]) * 10)
        assert response.status_code == 204, response.text
        assert response.headers["upload-offset"] == str(offset + 10)
        tokens.append(await _lock_token(stack, upload_id))
    assert tokens[0] is not None  # parked after the first chunk
    assert tokens[0] == tokens[1], tokens  # handed over to the second, kept
    assert tokens[2] is None  # the last chunk released it
    await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    chunks = stack.events.of(ChunkUploaded, upload_id=upload_id)
    assert [(c.offset, c.length, c.complete) for c in chunks] == [
        (0, 10, False),
        (10, 10, False),
        (20, 10, True),
    ]
    assert await head_offset(stack, stack.alice, upload_id) == 30


async def test_an_answered_chunks_lock_is_freed_when_no_next_patch_comes(
    stack: UploadStack,
) -> None:
    upload_id = await create(stack, stack.alice, 30)
    assert (await patch(stack, stack.alice, upload_id, 0, b"x" * 10)).status_code == 204
    await wait_until(lambda: _unlocked(stack, upload_id), what="the parked lock's release")
    chunk = await stack.events.wait_for(ChunkUploaded, upload_id=upload_id)
    assert (chunk.offset, chunk.length, chunk.complete) == (0, 10, False)


async def test_the_next_patch_at_another_gateway_waits_for_the_lock_instead_of_423(
    upload_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose chunks a proxy spreads over gateways: the second gateway finds the
    lock still with the first, which frees it moments later; no 423 in between."""
    linger_for(monkeypatch, 2.0)
    monkeypatch.setattr(engine, "LOCK_WAIT_S", 60.0)  # outwaits the linger on any host
    stack = await upload_stack.start("local", with_uploader=False, gateways=2)
    upload_id = await create(stack, stack.alice, 20)
    assert (await patch(stack, stack.alice, upload_id, 0, b"a" * 10)).status_code == 204
    assert await _lock_token(stack, upload_id) is not None  # parked on the first gateway
    async with httpx.AsyncClient(base_url=stack.extra_urls[0]) as client:
        response = await client.patch(
            f"/files/{upload_id}",
            content=b"b" * 10,
            headers=auth(
                stack.alice,
                **{"Upload-Offset": "10", "Content-Type": "application/offset+octet-stream"},
            ),
        )
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == "20"
    await stack.events.wait_for(ChunkUploaded, upload_id=upload_id, complete=True)
    offsets = [c.offset for c in stack.events.of(ChunkUploaded, upload_id=upload_id)]
    assert offsets == [0, 10]


async def test_a_handed_over_lock_still_slides_the_expiry(
    upload_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock passed from PATCH to PATCH is released only at the end; the expiry an
    answered chunk earned goes to the row with the lease's next renewal meanwhile."""
    linger_for(monkeypatch, 60.0)
    stack = await upload_stack.start("local", with_uploader=False, tus_lock_lease_s=0.6)
    upload_id = await create(stack, stack.alice, 2 * MiB)

    async def row() -> Upload:
        async with stack.sessions() as session:
            found = await session.get(Upload, upload_id, populate_existing=True)
        assert found is not None
        return found

    created = (await row()).expires_at
    assert (await patch(stack, stack.alice, upload_id, 0, b"a" * 10)).status_code == 204
    parked_token = (await row()).lock_token
    assert parked_token is not None
    async with held_patch(stack, stack.alice, upload_id, 10, b"b" * 10, declared=MiB):

        async def slid_while_held() -> bool:
            now = await row()
            return now.lock_token == parked_token and now.expires_at > created

        await wait_until(slid_while_held, what="the expiry to slide under the same lock")


async def test_a_silent_body_times_out_and_keeps_its_bytes(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local", with_uploader=False, tus_read_timeout_s=0.5)
    upload_id = await create(stack, stack.alice, MiB)
    async with held_patch(stack, stack.alice, upload_id, 0, b"q" * 700, declared=MiB) as sock:
        answer = await asyncio.to_thread(sock.recv, 65536)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"upload-offset: 700" in answer.lower()
    assert await head_offset(stack, stack.alice, upload_id) == 700


# --- termination, expiry, CORS ---------------------------------------------------------


async def test_termination(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 10)
    assert (await patch(stack, stack.alice, upload_id, 0, b"abc")).status_code == 204
    response = await stack.client.delete(f"/files/{upload_id}", headers=auth(stack.alice))
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert (
        await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
    ).status_code == 404
    problem(await patch(stack, stack.alice, upload_id, 3, b"d"), 404)
    assert [info.key async for info in stack.store.list(f"uploads/{upload_id}/")] == []
    assert await stack.store.list_multipart(source_key(upload_id)) == []
    rejected = await stack.events.wait_for(UploadRejected, upload_id=upload_id)
    assert (rejected.code, rejected.offset) == ("cancelled", 3)
    with pytest.raises(ObjectNotFound):
        await stack.store.stat(source_key(upload_id))


async def test_a_complete_upload_cannot_be_terminated(stack: UploadStack) -> None:
    upload_id = await create(stack, stack.alice, 2)
    assert (await patch(stack, stack.alice, upload_id, 0, b"ab")).status_code == 204
    problem(await stack.client.delete(f"/files/{upload_id}", headers=auth(stack.alice)), 409)


async def test_an_expired_upload_is_gone(upload_stack: StackFactory) -> None:
    stack = await upload_stack.start("local", with_uploader=False, tus_expiry_s=1)
    upload_id = await create(stack, stack.alice, 10)

    async def gone() -> bool:
        response = await stack.client.head(f"/files/{upload_id}", headers=auth(stack.alice))
        return response.status_code == 410

    await wait_until(gone, timeout_s=10, what="the upload to expire")
    problem(await patch(stack, stack.alice, upload_id, 0, b"x"), 410)


async def test_cors_exposes_the_tus_headers_to_configured_origins(
    upload_stack: StackFactory,
) -> None:
    origin = "https://app.example.com"
    stack = await upload_stack.start("local", with_uploader=False, cors_origins=(origin,))
    preflight = await stack.client.options(
        "/files/",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable, upload-offset, upload-checksum",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "PATCH" in preflight.headers["access-control-allow-methods"]
    allowed = preflight.headers["access-control-allow-headers"]
    assert {"tus-resumable", "upload-offset", "upload-checksum"} <= set(allowed.split(", "))
    upload_id = await create(stack, stack.alice, 10)
    head = await stack.client.head(
        f"/files/{upload_id}", headers={**auth(stack.alice), "Origin": origin}
    )
    exposed = {
        name.strip().lower() for name in head.headers["access-control-expose-headers"].split(",")
    }
    assert {
        "upload-offset",
        "upload-length",
        "location",
        "tus-resumable",
        "upload-expires",
    } <= exposed
    foreign = await stack.client.head(
        f"/files/{upload_id}", headers={**auth(stack.alice), "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in foreign.headers
