"""What the folder store must get right beyond the shared contract: its files on disk."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from common.settings import Settings, SettingsError
from common.store import (
    InvalidKey,
    MultipartUpload,
    ObjectNotFound,
    StoreUnavailable,
    UploadNotFound,
    create_store,
    validate_key,
    validate_prefix,
)
from common.store.local import LocalStore

pytestmark = pytest.mark.unit


def files_under(root: Path) -> list[str]:
    """Every file and folder below ``root``, hidden ones included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    local = LocalStore(tmp_path / "media")
    await local.ensure_ready()
    return local


# -- keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "live/42/seg_00017.m4s", "x" * 255, "é/스트림/😀", "a b/c?d&e=f", "a..b", "a./b"],
)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "non-empty"),
        ("../x", "'..' segment"),
        ("a/../../b", "'..' segment"),
        ("a/./b", "'.' segment"),
        ("/abs", "must not start with '/'"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("a\x00b", "control character 0x00"),
        ("a\x7fb", "control character 0x7f"),
        ("a\\b", "backslash"),
        (".hidden", "hidden segment"),
        ("a/.multipart", "hidden segment"),
        ("x" * 256, "over 255 bytes"),
        ("/".join(["x" * 200] * 6), "limit is 1024"),
        ("\ud800", "not valid UTF-8"),
    ],
)
def test_bad_keys(key: str, reason: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert reason in str(caught.value)


def test_prefixes() -> None:
    for prefix in ["", "a", "a/", "videos/ab", "a/b/"]:
        assert validate_prefix(prefix) == prefix
    for bad in ["/", "//", "../", "a/../", "/a", "a//", "a\x00"]:
        with pytest.raises(InvalidKey):
            validate_prefix(bad)


# -- files on disk ------------------------------------------------------------------


async def test_layout_and_content_type_sidecar(store: LocalStore) -> None:
    await store.put("v/index.m3u8", b"#EXTM3U", content_type="application/vnd.apple.mpegurl")
    await store.put("v/blob", b"x", content_type="text/plain")

    # A sidecar only where the type differs from the fixed default for the name.
    assert files_under(store.root) == ["v", "v/.blob.ctype", "v/blob", "v/index.m3u8"]
    assert (await store.stat("v/index.m3u8")).content_type == "application/vnd.apple.mpegurl"
    assert (await store.stat("v/blob")).content_type == "text/plain"

    await store.put("v/blob", b"y")  # back to the default type: sidecar removed
    assert files_under(store.root) == ["v", "v/blob", "v/index.m3u8"]
    assert (await store.stat("v/blob")).content_type == "application/octet-stream"


async def test_failed_writes_leave_no_temp_files(store: LocalStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 3_000_000
        raise OSError("client went away")

    with pytest.raises(OSError, match="went away"):
        await store.put("a/b", broken())
    with pytest.raises(Exception, match="announced"):
        await store.put("a/b", b"xyz", length=2)

    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []


@pytest.mark.parametrize("chunks", [1, 7])
async def test_a_body_broken_while_its_file_opens_or_is_written_leaves_nothing(
    store: LocalStore, chunks: int
) -> None:
    """1 MiB: still waiting for the temp file (the backlog); 7 MiB: writes in flight."""

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield os.urandom(1024 * 1024)
        raise OSError("client went away")

    with pytest.raises(OSError, match="went away"):
        await store.put("a/b", broken())
    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []
    assert not (store.root / "a" / "b").exists()


async def test_a_cancelled_streamed_write_leaves_nothing(store: LocalStore) -> None:
    started = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(1024 * 1024)
        started.set()
        await asyncio.Event().wait()  # the client goes silent
        yield b""

    writing = asyncio.create_task(store.put("a/b", stalled()))
    await asyncio.wait_for(started.wait(), timeout=10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []
    assert not (store.root / "a" / "b").exists()


class _StallingBody:
    """A BlockingBody that sends ``before`` bytes, then waits until ``go`` is set and
    fails (a client gone after a silence), or refuses the object at its end."""

    def __init__(self, before: int, *, refuse: bool = False) -> None:
        self.left = before
        self.refuse = refuse
        self.waiting = threading.Event()
        self.go = threading.Event()

    def readinto(self, view: memoryview) -> int:
        if self.left:
            count = min(len(view), self.left)
            view[:count] = b"z" * count
            self.left -= count
            return count
        if self.refuse:
            return 0
        self.waiting.set()
        self.go.wait(timeout=10)
        raise ConnectionResetError("client went away")

    def ended(self, read_back: Callable[[], bytes]) -> None:
        assert read_back() == b"z" * 1024 * 1024 * 3
        raise LookupError("refused")


@pytest.mark.parametrize("before", [0, 1024 * 1024 // 2, 7 * 1024 * 1024])
async def test_a_blocking_body_that_breaks_or_is_refused_leaves_nothing(
    store: LocalStore, before: int
) -> None:
    """Before a buffer is full, with writes in flight, and refused after a read-back."""
    failing = _StallingBody(before)
    failing.go.set()
    with pytest.raises(ConnectionResetError):
        await store.put("a/b", failing)
    with pytest.raises(LookupError):
        await store.put("a/b", _StallingBody(3 * 1024 * 1024, refuse=True))
    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []
    assert not (store.root / "a" / "b").exists()


async def test_a_cancelled_blocking_write_is_dropped_by_its_thread(store: LocalStore) -> None:
    """The caller goes at once; the worker thread ends with its body and cleans up."""
    body = _StallingBody(6 * 1024 * 1024)
    writing = asyncio.create_task(store.put("a/b", body))
    assert await asyncio.to_thread(body.waiting.wait, 10)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    body.go.set()  # the reader gives up: the thread drops the file
    for _ in range(500):
        if not [p for p in files_under(store.root) if Path(p).name.startswith(".")]:
            break
        await asyncio.sleep(0.01)
    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []
    assert not (store.root / "a" / "b").exists()


async def test_delete_prunes_empty_folders(store: LocalStore) -> None:
    await store.put("a/b/c/one", b"1", content_type="text/plain")
    await store.put("a/b/two", b"2")

    await store.delete("a/b/c/one")
    assert files_under(store.root) == ["a", "a/b", "a/b/two"]
    assert await store.delete_prefix("a/") == 1
    assert files_under(store.root) == []
    assert store.root.is_dir()  # the root itself stays


async def test_object_and_folder_cannot_share_a_key(store: LocalStore) -> None:
    await store.put("a/b", b"file")
    with pytest.raises(InvalidKey, match="needs 'a/b' as a folder"):
        await store.put("a/b/c", b"under a file")
    await store.put("x/y/z", b"deep")
    with pytest.raises(InvalidKey, match="folder of other objects"):
        await store.put("x/y", b"over a folder")
    assert await store.read("a/b") == b"file"
    assert await store.read("x/y/z") == b"deep"
    assert [p for p in files_under(store.root) if Path(p).name.startswith(".")] == []


async def test_concurrent_writers_leave_one_whole_object(store: LocalStore) -> None:
    bodies = [bytes([n]) * 200_000 for n in range(16)]
    await asyncio.gather(*(store.put("race/obj", body) for body in bodies))

    assert await store.read("race/obj") in bodies
    assert files_under(store.root) == ["race", "race/obj"]


async def test_open_stream_keeps_reading_the_old_version(store: LocalStore) -> None:
    await store.put("v/obj", b"A" * 100)
    async with await store.get("v/obj", chunk_size=10) as stream:
        first = await anext(stream)
        await store.put("v/obj", b"B" * 50)  # a new inode; the open one is untouched
        rest = b"".join([chunk async for chunk in stream])
    assert first + rest == b"A" * 100
    assert await store.read("v/obj") == b"B" * 50


async def test_truncated_file_is_reported_not_served_short(store: LocalStore) -> None:
    await store.put("v/obj", b"A" * 100_000)
    stream = await store.get("v/obj", chunk_size=4096)
    await anext(stream)
    os.truncate(store.root / "v" / "obj", 20_000)  # same inode, shrunk under the reader

    with pytest.raises(StoreUnavailable, match="ended after 20000 of 100000 bytes"):
        async for _ in stream:
            pass


async def test_symlinks_are_not_followed(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (store.root / "link").symlink_to(outside)
    await store.put("real", b"x")

    assert [info.key async for info in store.list()] == ["real"]
    assert await store.delete_prefix("link") == 0
    assert (outside / "secret").exists()


# -- multipart folder ---------------------------------------------------------------


async def test_multipart_folder_is_removed_on_complete_and_abort(store: LocalStore) -> None:
    done = await store.create_multipart("up/done")
    part = await store.upload_part(done, 1, b"x")
    dropped = await store.create_multipart("up/dropped")
    await store.upload_part(dropped, 1, b"y")
    assert (store.root / ".multipart" / done.upload_id / "part-00001").exists()

    await store.complete_multipart(done, [part])
    await store.abort_multipart(dropped)

    assert files_under(store.root) == [".multipart", "up", "up/done"]


@pytest.mark.parametrize("upload_id", ["../../etc", "..", "", "A" * 32, "0" * 31 + "/"])
async def test_upload_ids_cannot_reach_outside(store: LocalStore, upload_id: str) -> None:
    upload = MultipartUpload(upload_id=upload_id, key="k")
    with pytest.raises(UploadNotFound):
        await store.upload_part(upload, 1, b"x")
    with pytest.raises(UploadNotFound):
        await store.list_parts(upload)
    await store.abort_multipart(upload)  # nothing to abort; nothing removed
    assert files_under(store.root) == []


async def test_upload_id_is_bound_to_its_key(store: LocalStore) -> None:
    upload = await store.create_multipart("mine")
    stolen = MultipartUpload(upload_id=upload.upload_id, key="theirs")
    with pytest.raises(UploadNotFound, match="not for 'theirs'"):
        await store.upload_part(stolen, 1, b"x")
    await store.abort_multipart(stolen)
    assert await store.list_parts(upload) == []  # still there


# -- factory ------------------------------------------------------------------------


def test_factory(tmp_path: Path) -> None:
    local = create_store(Settings(store_backend="local", store_path=tmp_path))
    assert isinstance(local, LocalStore)
    assert local.root == tmp_path.resolve()

    from common.store.s3 import S3Store

    s3 = create_store(
        Settings(store_backend="s3", s3_access_key="k", s3_secret_key="s" * 8, s3_bucket="vpk")
    )
    assert isinstance(s3, S3Store)
    assert s3.bucket == "vpk"

    with pytest.raises(SettingsError, match="S3_ACCESS_KEY"):
        create_store(Settings(store_backend="s3"))
    with pytest.raises(SettingsError, match="'local' or 's3'"):
        create_store(Settings(store_backend="gcs"))


async def test_missing_is_not_found_even_through_a_file(store: LocalStore) -> None:
    await store.put("file", b"x")
    with pytest.raises(ObjectNotFound):
        await store.stat("file/child")
    await store.delete("file/child")


async def test_a_transient_put_skips_fsync_but_stays_atomic(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    # New folders are made durable once, by the first object in them.
    await store.put("live/s/init.mp4", b"init", content_type="video/mp4")
    monkeypatch.setattr(os, "fsync", counting_fsync)
    # The suffix's own type, as the packager sends it: no content-type sidecar to write.
    await store.put(
        "live/s/part.m4s", b"transient", content_type="video/iso.segment", durable=False
    )
    assert synced == []  # neither the file nor its folder
    assert await store.read("live/s/part.m4s") == b"transient"
    # No temp file left behind.
    assert files_under(store.root) == ["live", "live/s", "live/s/init.mp4", "live/s/part.m4s"]
    await store.put("live/s/seg.m4s", b"durable", content_type="video/iso.segment")
    assert len(synced) == 2  # the file, then the folder holding the rename
