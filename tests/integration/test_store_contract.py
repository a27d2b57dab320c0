"""One contract for every object-store backend: the folder store and real MinIO.

Each test runs on both (``store`` is parametrized); a few S3-only checks (signatures,
an unreachable endpoint) say so in their name.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from common.store import (
    MIN_PART_SIZE,
    InvalidKey,
    InvalidPart,
    InvalidRange,
    LengthMismatch,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartTooSmall,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)
from common.store.local import LocalStore
from common.store.s3 import S3Store
from tests.fixtures.minio import MinioServer

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    backend: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return backend


async def chunks_of(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    """``data`` cut into pieces of the given sizes (cycled), as an async iterable."""
    sizes = list(sizes)
    offset = 0
    index = 0
    while offset < len(data):
        size = sizes[index % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        index += 1


async def keys(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key async for info in store.list(prefix)]


async def sha256_of(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    async with await store.get(key) as stream:
        async for chunk in stream:
            digest.update(chunk)
    return digest.hexdigest()


# -- put / get ------------------------------------------------------------------------


async def test_bytes_round_trip(store: ObjectStore) -> None:
    info = await store.put("a/hello.txt", b"hello world", content_type="text/plain")

    assert info.key == "a/hello.txt"
    assert info.size == 11
    assert info.etag
    assert await store.read("a/hello.txt") == b"hello world"
    stat = await store.stat("a/hello.txt")
    assert (stat.size, stat.content_type, stat.etag) == (11, "text/plain", info.etag)
    assert await store.exists("a/hello.txt")


async def test_get_streams_in_chunks_with_object_info(store: ObjectStore) -> None:
    data = os.urandom(100_000)
    await store.put("v/seg.m4s", data, content_type="video/iso.segment")

    async with await store.get("v/seg.m4s", chunk_size=30_000) as stream:
        assert (stream.info.size, stream.start, stream.end) == (100_000, 0, 99_999)
        assert stream.info.content_type == "video/iso.segment"
        pieces = [chunk async for chunk in stream]

    assert [len(p) for p in pieces] == [30_000, 30_000, 30_000, 10_000]
    assert b"".join(pieces) == data


async def test_async_iterable_round_trip(store: ObjectStore) -> None:
    data = os.urandom(3 * MiB + 123)

    info = await store.put("up/stream.bin", chunks_of(data, [1, 65_536, 7_777, 300_000]))

    assert info.size == len(data)
    assert await store.read("up/stream.bin") == data


async def test_async_iterable_larger_than_a_part(store: ObjectStore) -> None:
    # Over S3Store's 8 MiB part size, unknown length: multipart under the hood.
    data = os.urandom(20 * MiB + 5)

    info = await store.put("up/big.bin", chunks_of(data, [MiB]), content_type="video/mp4")

    assert info.size == len(data)
    assert (await store.stat("up/big.bin")).content_type == "video/mp4"
    assert await sha256_of(store, "up/big.bin") == hashlib.sha256(data).hexdigest()


class BlockingBytes:
    """A BlockingBody over ``data``, in reads of at most ``step`` bytes; it may fail
    after ``fail_after`` bytes, and may refuse the object at its end (keeping what
    ``read_back`` gave, as the tus writer does with a tail)."""

    def __init__(self, data: bytes, *, step: int = 300_001, fail_after: int | None = None) -> None:
        self._data = memoryview(data)
        self._step = step
        self._fail_after = fail_after
        self.position = 0
        self.refuse = False
        self.read_back: bytes | None = None
        self.threads: set[str] = set()

    def readinto(self, view: memoryview) -> int:
        self.threads.add(threading.current_thread().name)
        if self._fail_after is not None and self.position >= self._fail_after:
            raise ConnectionResetError("client went away")
        count = min(len(view), self._step, len(self._data) - self.position)
        view[:count] = self._data[self.position : self.position + count]
        self.position += count
        return count

    def ended(self, read_back: Callable[[], bytes]) -> None:
        if self.refuse:
            self.read_back = read_back()
            raise LookupError("refused at its end")


async def test_blocking_body_round_trip_off_the_event_loop(store: ObjectStore) -> None:
    data = os.urandom(9 * MiB + 77)
    body = BlockingBytes(data)

    info = await store.put("up/blocking.bin", body, length=len(data))
    part = await store.upload_part(await store.create_multipart("up/mp"), 1, BlockingBytes(data))

    assert info.size == part.size == len(data)
    assert await sha256_of(store, "up/blocking.bin") == hashlib.sha256(data).hexdigest()
    assert threading.main_thread().name not in body.threads  # read on worker threads


async def test_blocking_body_refused_at_its_end_gives_its_bytes_back(store: ObjectStore) -> None:
    """What the tus writer relies on to turn a too-short part into a tail."""
    data = os.urandom(3 * MiB + 5)
    body = BlockingBytes(data)
    body.refuse = True
    upload = await store.create_multipart("up/refused")

    with pytest.raises(LookupError, match="refused"):
        await store.upload_part(upload, 1, body)
    assert body.read_back == data
    assert await store.list_parts(upload) == []


async def test_a_failing_blocking_body_leaves_nothing(store: ObjectStore) -> None:
    body = BlockingBytes(os.urandom(9 * MiB), fail_after=5 * MiB)
    with pytest.raises(ConnectionResetError):
        await store.put("up/broken", body)
    with pytest.raises(LengthMismatch):
        await store.put("up/broken", BlockingBytes(b"x" * (3 * MiB)), length=MiB)
    assert await keys(store) == []
    assert await store.list_multipart("up/broken") == []


async def test_large_bytes_put(store: ObjectStore) -> None:
    data = os.urandom(17 * MiB + 3)  # over one S3 part: the SDK's own multipart

    info = await store.put("up/bytes.bin", data)

    assert info.size == len(data)
    assert (await store.stat("up/bytes.bin")).size == len(data)
    assert await sha256_of(store, "up/bytes.bin") == hashlib.sha256(data).hexdigest()


async def test_stream_closed_early(store: ObjectStore) -> None:
    await store.put("v/long", os.urandom(3 * MiB))
    stream = await store.get("v/long", chunk_size=64 * 1024)
    assert len(await anext(stream)) == 64 * 1024

    await stream.aclose()

    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert (await store.stat("v/long")).size == 3 * MiB  # the store still works


async def test_many_concurrent_operations(store: ObjectStore) -> None:
    bodies = {f"many/{n:03d}": os.urandom(1000 + n) for n in range(64)}

    await asyncio.gather(*(store.put(key, body) for key, body in bodies.items()))
    read = await asyncio.gather(*(store.read(key) for key in bodies))

    assert dict(zip(bodies, read, strict=True)) == bodies
    assert await keys(store, "many/") == sorted(bodies)


async def test_empty_object(store: ObjectStore) -> None:
    await store.put("empty", b"")
    assert await store.read("empty") == b""
    assert (await store.stat("empty")).size == 0
    with pytest.raises(InvalidRange):
        await store.read_range("empty", 0, 0)


@pytest.mark.parametrize("announced", [10, 12])
async def test_length_mismatch_stores_nothing(store: ObjectStore, announced: int) -> None:
    with pytest.raises(LengthMismatch, match="announced"):
        await store.put("lie", chunks_of(b"x" * 11, [4]), length=announced)
    with pytest.raises(LengthMismatch):
        await store.put("lie", b"x" * 11, length=announced)
    assert not await store.exists("lie")
    assert await keys(store) == []


async def test_overwrite_replaces_bytes_and_type(store: ObjectStore) -> None:
    first = await store.put("o/obj", b"version one", content_type="text/plain")
    second = await store.put("o/obj", b"v2", content_type="application/json")

    assert await store.read("o/obj") == b"v2"
    stat = await store.stat("o/obj")
    assert (stat.size, stat.content_type) == (2, "application/json")
    assert second.etag != first.etag
    assert await keys(store) == ["o/obj"]


async def test_readers_never_see_a_half_written_object(store: ObjectStore) -> None:
    await store.put("live/index.m3u8", b"old playlist")
    seen: list[tuple[bool, bytes]] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"new "
        # Mid-write: the new object must not exist yet, the old one must be whole.
        seen.append((await store.exists("live/new.bin"), await store.read("live/index.m3u8")))
        yield b"playlist"

    await store.put("live/new.bin", body())
    await store.put("live/index.m3u8", body())

    assert seen == [(False, b"old playlist"), (True, b"old playlist")]
    assert await store.read("live/index.m3u8") == b"new playlist"


async def test_failed_stream_leaves_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(9 * MiB)  # past one S3 part: an upload is in flight
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("up/broken", broken())
    assert not await store.exists("up/broken")
    assert await keys(store) == []
    assert await store.list_multipart("up/broken") == []  # S3's hidden upload was aborted


# -- ranges ---------------------------------------------------------------------------


async def test_ranged_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4  # 1024 bytes, every position distinct mod 256
    await store.put("r/obj", data)

    assert await store.read_range("r/obj", 0, 0) == data[:1]
    assert await store.read_range("r/obj", 300, 555) == data[300:556]
    assert await store.read_range("r/obj", 1023, 1023) == data[-1:]
    assert await store.read_range("r/obj", 0, 1023) == data
    async with await store.get_range("r/obj", 10, 19) as stream:
        assert (stream.start, stream.end, stream.length, stream.info.size) == (10, 19, 10, 1024)
        assert b"".join([c async for c in stream]) == data[10:20]


@pytest.mark.parametrize(("start", "end"), [(1024, 1024), (1000, 1024), (5, 4), (-1, 3)])
async def test_range_outside_object_is_refused(store: ObjectStore, start: int, end: int) -> None:
    await store.put("r/obj", b"z" * 1024)

    with pytest.raises(InvalidRange, match="r/obj"):
        await store.get_range("r/obj", start, end)


# -- missing, list, delete ------------------------------------------------------------


async def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        await store.get("no/such/key")
    assert caught.value.key == "no/such/key"
    assert "no/such/key" in str(caught.value)
    with pytest.raises(ObjectNotFound):
        await store.stat("no/such/key")
    with pytest.raises(ObjectNotFound):
        await store.read("no/such/key")
    with pytest.raises(ObjectNotFound):
        await store.get_range("no/such/key", 0, 0)
    assert not await store.exists("no/such/key")
    await store.delete("no/such/key")  # deleting nothing is fine


async def test_a_prefix_is_not_an_object(store: ObjectStore) -> None:
    await store.put("dir/child", b"x")
    with pytest.raises(ObjectNotFound):
        await store.stat("dir")
    assert not await store.exists("dir")


LISTED = [
    "videos/a/1.ts",
    "videos/a/10.ts",
    "videos/a/2.ts",
    "videos/ab/x",
    "videos/b/deep/er/y",
    "videos-other/z",
    "top",
]


async def test_list_by_prefix_sorted(store: ObjectStore) -> None:
    for index, key in enumerate(LISTED):
        await store.put(key, b"#" * index)

    everything = [info async for info in store.list()]
    assert [info.key for info in everything] == sorted(LISTED)
    assert all(isinstance(info, ObjectInfo) for info in everything)
    assert {info.key: info.size for info in everything} == {k: i for i, k in enumerate(LISTED)}
    assert await keys(store, "videos/a/") == ["videos/a/1.ts", "videos/a/10.ts", "videos/a/2.ts"]
    # A plain string prefix, as in S3: "videos/a" also matches "videos/ab/...".
    assert await keys(store, "videos/a") == [*sorted(LISTED[:3]), "videos/ab/x"]
    assert await keys(store, "videos/b/") == ["videos/b/deep/er/y"]
    assert await keys(store, "videos") == sorted(LISTED[:-1])
    assert await keys(store, "nothing/") == []


async def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for key in LISTED:
        await store.put(key, b"x")

    await store.delete("top")
    assert not await store.exists("top")
    assert await store.delete_prefix("videos/a/") == 3
    assert await keys(store) == ["videos-other/z", "videos/ab/x", "videos/b/deep/er/y"]
    assert await store.delete_prefix("videos/") == 2
    assert await keys(store) == ["videos-other/z"]
    assert await store.delete_prefix("nothing/") == 0
    with pytest.raises(InvalidKey, match="empty prefix"):
        await store.delete_prefix("")
    assert await keys(store) == ["videos-other/z"]


# -- hostile keys -------------------------------------------------------------------

BAD_KEYS = [
    "",
    "../x",
    "a/../../b",
    "..",
    "/abs",
    "a\x00b",
    "a\nb",
    "a\\..\\b",
    "a//b",
    "./a",
    "a/",
    ".multipart/x",
    "x" * 1025,
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
async def test_bad_keys_are_refused_everywhere(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, b"evil")
    with pytest.raises(InvalidKey):
        await store.put(key, chunks_of(b"evil", [2]))
    with pytest.raises(InvalidKey):
        await store.get(key)
    with pytest.raises(InvalidKey):
        await store.stat(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)
    with pytest.raises(InvalidKey):
        await store.presigned_get_url(key)
    with pytest.raises(InvalidKey):
        await store.create_multipart(key)
    with pytest.raises(InvalidKey):
        await store.compose(key, ["fine"])
    assert await keys(store) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../b", "a\x00"], ids=repr)
async def test_bad_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        await keys(store, prefix)
    with pytest.raises(InvalidKey):
        await store.delete_prefix(prefix)


async def test_unicode_and_spaces_are_fine(store: ObjectStore) -> None:
    key = "chat/스트림 #1/é?&=.json"
    await store.put(key, b"{}")
    assert await keys(store, "chat/") == [key]
    assert await store.read(key) == b"{}"


# -- multipart ------------------------------------------------------------------------


async def test_multipart_64_mib(store: ObjectStore) -> None:
    data = os.urandom(64 * MiB + MiB + 7)  # 8 parts of 8 MiB, then a smaller last one
    upload = await store.create_multipart("vod/big.mp4", "video/mp4")
    uploaded = []
    for number, offset in enumerate(range(0, len(data), 8 * MiB), start=1):
        piece = data[offset : offset + 8 * MiB]
        if number % 2:
            uploaded.append(await store.upload_part(upload, number, piece))
        else:  # the async-iterable path, with its announced length
            body = chunks_of(piece, [MiB])
            uploaded.append(await store.upload_part(upload, number, body, len(piece)))

    assert [p.size for p in uploaded] == [8 * MiB] * 8 + [MiB + 7]
    assert await store.list_parts(upload) == uploaded
    info = await store.complete_multipart(upload, uploaded)

    assert info.size == len(data)
    assert info.content_type == "video/mp4"
    assert await sha256_of(store, "vod/big.mp4") == hashlib.sha256(data).hexdigest()
    assert (
        await store.read_range("vod/big.mp4", 8 * MiB - 2, 8 * MiB + 1)
        == data[8 * MiB - 2 : 8 * MiB + 2]
    )
    with pytest.raises(UploadNotFound):
        await store.list_parts(upload)


async def test_list_parts_reports_what_was_uploaded(store: ObjectStore) -> None:
    upload = await store.create_multipart("tus/abc")
    one = await store.upload_part(upload, 1, b"a" * MIN_PART_SIZE)
    three = await store.upload_part(upload, 3, b"c" * 1000)
    assert await store.list_parts(upload) == [one, three]

    # Re-sending a part (a retried tus PATCH) replaces it.
    again = await store.upload_part(upload, 1, b"b" * (MIN_PART_SIZE + 1))
    assert again.etag != one.etag
    assert await store.list_parts(upload) == [again, three]

    # Parts not named in complete are dropped; the gap in numbers is fine.
    info = await store.complete_multipart(upload, [again, three])
    assert info.size == MIN_PART_SIZE + 1 + 1000
    assert await store.read_range("tus/abc", MIN_PART_SIZE, MIN_PART_SIZE + 1) == b"bc"


async def test_abort_leaves_nothing_behind(store: ObjectStore) -> None:
    upload = await store.create_multipart("up/aborted")
    part = await store.upload_part(upload, 1, os.urandom(MIN_PART_SIZE))
    await store.upload_part(upload, 2, b"tail")

    await store.abort_multipart(upload)

    with pytest.raises(UploadNotFound):
        await store.list_parts(upload)
    with pytest.raises(UploadNotFound):
        await store.upload_part(upload, 3, b"late")
    with pytest.raises(UploadNotFound):
        await store.complete_multipart(upload, [part])
    assert not await store.exists("up/aborted")
    assert await keys(store) == []
    assert await store.list_multipart("up/aborted") == []
    await store.abort_multipart(upload)  # twice is fine


async def test_list_multipart_finds_unfinished_uploads(store: ObjectStore) -> None:
    first = await store.create_multipart("tus/a")
    second = await store.create_multipart("tus/a")  # a retried create: two uploads
    other = await store.create_multipart("tus/ab")
    await store.upload_part(second, 1, b"partial")

    found = await store.list_multipart("tus/a")
    assert sorted(found, key=lambda u: u.upload_id) == found
    assert set(found) == {first, second}
    assert await store.list_multipart("tus/ab") == [other]
    assert await store.list_multipart("tus/none") == []

    for upload in (first, second, other):
        await store.abort_multipart(upload)
    assert await store.list_multipart("tus/a") == []
    assert await store.list_multipart("tus/ab") == []


async def test_small_part_that_is_not_last_is_refused(store: ObjectStore) -> None:
    upload = await store.create_multipart("up/small")
    parts = [
        await store.upload_part(upload, 1, b"x" * MiB),
        await store.upload_part(upload, 2, b"y" * MiB),
    ]

    with pytest.raises(PartTooSmall, match=r"5 MiB|5242880"):
        await store.complete_multipart(upload, parts)

    assert not await store.exists("up/small")
    assert await store.list_parts(upload) == parts  # the upload survives the refusal
    # A single small part is a valid (last) part.
    assert (await store.complete_multipart(upload, parts[:1])).size == MiB


async def test_complete_checks_the_parts(store: ObjectStore) -> None:
    upload = await store.create_multipart("up/parts")
    one = await store.upload_part(upload, 1, b"1" * MIN_PART_SIZE)
    two = await store.upload_part(upload, 2, b"2")

    with pytest.raises(InvalidPart):
        await store.complete_multipart(upload, [two, one])  # order
    with pytest.raises(InvalidPart):
        await store.complete_multipart(upload, [])
    with pytest.raises(InvalidPart):
        await store.complete_multipart(upload, [one, type(two)(3, two.etag, 1)])  # never sent
    with pytest.raises(InvalidPart):
        await store.complete_multipart(upload, [one, type(two)(2, "0" * 32, 1)])  # wrong etag
    with pytest.raises(InvalidPart):
        await store.upload_part(upload, 10_001, b"x")
    with pytest.raises(LengthMismatch):
        await store.upload_part(upload, 3, chunks_of(b"abc", [1]), 2)

    assert (await store.complete_multipart(upload, [one, two])).size == MIN_PART_SIZE + 1


# -- compose ------------------------------------------------------------------------


async def test_compose(store: ObjectStore) -> None:
    head = os.urandom(MIN_PART_SIZE)
    await store.put("c/head", head)
    await store.put("c/tail", b"tail")

    info = await store.compose("c/joined", ["c/head", "c/tail"], content_type="video/mp4")

    assert info.size == MIN_PART_SIZE + 4
    assert info.content_type == "video/mp4"
    assert await store.read("c/joined") == head + b"tail"
    with pytest.raises(PartTooSmall):
        await store.compose("c/bad", ["c/tail", "c/head"])
    with pytest.raises(ObjectNotFound) as caught:
        await store.compose("c/bad", ["c/head", "c/missing"])
    assert caught.value.key == "c/missing"
    assert not await store.exists("c/bad")


# -- presigned URLs -----------------------------------------------------------------


async def test_presigned_url_downloads_from_minio(s3_store: S3Store) -> None:
    await s3_store.put("p/clip.mp4", b"signed bytes", content_type="video/mp4")
    url = await s3_store.presigned_get_url("p/clip.mp4", expires_s=60)

    async with httpx.AsyncClient() as client:
        good = await client.get(url)
        assert good.status_code == 200
        assert good.content == b"signed bytes"

        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        signature = query["X-Amz-Signature"]
        query["X-Amz-Signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        tampered = urlunsplit(parts._replace(query=urlencode(query)))
        assert (await client.get(tampered)).status_code == 403

        other_key = urlunsplit(parts._replace(path=parts.path.replace("clip", "clop")))
        assert (await client.get(other_key)).status_code == 403

        query = dict(parse_qsl(parts.query), **{"X-Amz-Expires": "604800"})
        assert (
            await client.get(urlunsplit(parts._replace(query=urlencode(query))))
        ).status_code == 403


async def test_presigned_url_local_is_a_gateway_path(local_store: LocalStore) -> None:
    url = await local_store.presigned_get_url("vod/42/스트림 1.m3u8")
    assert url == "/media/vod/42/%EC%8A%A4%ED%8A%B8%EB%A6%BC%201.m3u8"
    with pytest.raises(ValueError, match="expires_s"):
        await local_store.presigned_get_url("vod/42/x", expires_s=0)


# -- failures ------------------------------------------------------------------------


async def test_unreachable_s3_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store(
        endpoint=f"127.0.0.1:{port}", access_key="k", secret_key="s" * 8, bucket="bucket"
    )
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.stat("any")
        with pytest.raises(StoreUnavailable):
            await store.put("any", b"x")
    finally:
        await store.close()


async def test_wrong_secret_is_a_clear_error(minio_server: MinioServer) -> None:
    store = S3Store(
        endpoint=minio_server.endpoint,
        access_key=minio_server.access_key,
        secret_key="not-the-secret",
        bucket="whatever",
    )
    try:
        with pytest.raises(StoreError, match=r"signature|denied") as caught:
            await store.stat("x")
        assert not isinstance(caught.value, ObjectNotFound | StoreUnavailable)
    finally:
        await store.close()
