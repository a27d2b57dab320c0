"""The folder store's streaming writers: every byte lands where it belongs, whatever the
chunking, on the direct path and on the page-cache fallback."""

from __future__ import annotations

import asyncio
import errno
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from common.store import _appender
from common.store._appender import Appender, BufferedAppender, DirectAppender
from common.store.local import STREAM_BUFFER, LocalStore

pytestmark = pytest.mark.unit

BUFFER = 64 * 1024


def direct(handle: BinaryIO, path: Path) -> Appender:
    appender = DirectAppender.open(handle, path, BUFFER)
    assert appender is not None, "this file system refuses O_DIRECT: the direct path is untested"
    return appender


def buffered(handle: BinaryIO, path: Path) -> Appender:
    return BufferedAppender(handle, BUFFER)


def append_all(appender: Appender, chunks: list[bytes]) -> None:
    """What the store does, with each full buffer written before the next fills up."""
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[appender.fill(view) :]
            if appender.full:
                appender.take_full()()
    appender.finish()
    appender.close()


def random_chunks(rng: random.Random, data: bytes) -> list[bytes]:
    chunks, at = [], 0
    while at < len(data):
        size = rng.choice([1, 7, 4095, 4096, 4097, BUFFER - 1, BUFFER, 3 * BUFFER + 5])
        chunks.append(data[at : at + size])
        at += size
    return chunks


@pytest.mark.parametrize("make", [direct, buffered], ids=["direct", "buffered"])
@pytest.mark.parametrize(
    "size", [0, 1, 4095, 4096, 4097, BUFFER, BUFFER + 1, 2 * BUFFER, 5 * BUFFER + 123]
)
def test_every_byte_lands_in_order(
    tmp_path: Path, make: Callable[[BinaryIO, Path], Appender], size: int
) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    path = tmp_path / "object"
    with path.open("xb") as handle:
        append_all(make(handle, path), random_chunks(rng, data))
        os.fsync(handle.fileno())
    assert path.read_bytes() == data


@pytest.mark.parametrize("make", [direct, buffered], ids=["direct", "buffered"])
def test_copy_all_concatenates_sources_of_any_size(
    tmp_path: Path, make: Callable[[BinaryIO, Path], Appender], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Aligned and unaligned sizes in a row: after an odd one the buffer position is
    # unaligned, and the next source must be read without O_DIRECT.
    sizes = [3 * 4096, 5000, 1, 8192, BUFFER + 7, 0, 2 * BUFFER]
    rng = random.Random(9)
    blobs = [rng.randbytes(size) for size in sizes]
    paths = []
    for number, blob in enumerate(blobs):
        paths.append(tmp_path / f"part-{number}")
        paths[-1].write_bytes(blob)
    monkeypatch.setattr(_appender, "open_appender", lambda h, p, size: make(h, p))
    target = tmp_path / "object"
    with target.open("xb") as handle:
        sources = [path.open("rb") for path in paths]
        try:
            _appender.copy_all(handle, target, sources, BUFFER)
        finally:
            for source in sources:
                source.close()
        os.fsync(handle.fileno())
    assert target.read_bytes() == b"".join(blobs)


def test_a_buffer_size_off_the_block_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "object"
    with path.open("xb") as handle, pytest.raises(ValueError, match="multiple of 4096"):
        DirectAppender(handle, os.open(path, os.O_WRONLY), 1000)


def test_without_direct_io_the_buffered_appender_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A system without O_DIRECT (macOS; Python built without it).
    monkeypatch.delattr(os, "O_DIRECT")
    path = tmp_path / "object"
    with path.open("xb") as handle:
        assert isinstance(_appender.open_appender(handle, path, BUFFER), BufferedAppender)


async def body(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def test_a_streamed_put_across_many_buffers_keeps_every_byte(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    rng = random.Random(5)
    data = rng.randbytes(3 * STREAM_BUFFER + 4321)
    chunks = [data[i : i + 65_000] for i in range(0, len(data), 65_000)]
    info = await store.put("uploads/big.bin", body(chunks), length=len(data))
    assert info.size == len(data)
    assert (tmp_path / "media" / "uploads" / "big.bin").read_bytes() == data


@pytest.mark.parametrize("buffers", [1, 2, 3])
async def test_a_body_ending_on_a_buffer_boundary_is_written_whole(
    tmp_path: Path, buffers: int
) -> None:
    """The full buffer that ends a body is written with the fsync, not before."""
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    data = random.Random(buffers).randbytes(buffers * STREAM_BUFFER)
    step = STREAM_BUFFER // 3 + 1
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    info = await store.put("uploads/even.bin", body(chunks), length=len(data))
    assert info.size == len(data)
    assert (tmp_path / "media" / "uploads" / "even.bin").read_bytes() == data


async def test_a_body_that_fails_midway_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()

    async def failing() -> AsyncIterator[bytes]:
        for _ in range(5):  # past two buffers: one write in flight when it fails
            yield bytes(STREAM_BUFFER // 2 + 1)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("uploads/cut.bin", failing())
    assert [p.name for p in (tmp_path / "media" / "uploads").iterdir()] == []


async def test_a_cancelled_put_waits_for_its_write_and_cleans_up(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield bytes(STREAM_BUFFER)
        stalled.set()
        await asyncio.sleep(3600)
        yield b""

    put = asyncio.create_task(store.put("uploads/stalled.bin", stalling()))
    await stalled.wait()
    put.cancel()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert [p.name for p in (tmp_path / "media" / "uploads").iterdir()] == []


async def test_a_reused_buffer_carries_nothing_of_the_previous_write(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    secret = b"S" * (2 * STREAM_BUFFER)  # fills both pooled buffers
    await store.put("uploads/first.bin", body([secret]), length=len(secret))
    small = b"small" * 1001  # 5,005 bytes: an aligned block and an unaligned tail
    await store.put("uploads/second.bin", body([small]), length=len(small))
    assert (tmp_path / "media" / "uploads" / "second.bin").read_bytes() == small


def test_a_device_refusing_the_alignment_gets_the_bytes_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "object"
    data = random.Random(3).randbytes(3 * BUFFER + 10)
    with path.open("xb") as handle:
        appender = direct(handle, path)
        buffered_fd = handle.fileno()
        real_pwrite = os.pwrite

        def refusing(fd: int, chunk: bytes, offset: int) -> int:
            if fd != buffered_fd:  # the O_DIRECT descriptor
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_pwrite(fd, chunk, offset)

        monkeypatch.setattr(os, "pwrite", refusing)
        append_all(appender, [data])
        monkeypatch.undo()
        os.fsync(handle.fileno())
    assert path.read_bytes() == data


@pytest.mark.parametrize("make", [direct, buffered])
def test_writes_taken_in_order_may_combine_and_still_land_right(
    tmp_path: Path, make: Callable[[BinaryIO, Path], Appender]
) -> None:
    """Three buffers taken before the first write runs: that write writes all three
    (direct) and the later ones find nothing left; the file is right either way."""
    path = tmp_path / "object"
    blobs = [os.urandom(BUFFER) for _ in range(3)] + [os.urandom(777)]
    with path.open("xb") as handle:
        appender = make(handle, path)
        writes = []
        for blob in blobs[:3]:
            assert appender.fill(memoryview(blob)) == BUFFER
            assert appender.full
            writes.append(appender.take_full_in_order())
        writes[0]()
        if make is direct:  # all three in one call
            assert path.stat().st_size == 3 * BUFFER
        for write in writes[1:]:
            write()
        appender.fill(memoryview(blobs[3]))
        appender.finish()
        appender.close()
        handle.flush()
    assert path.read_bytes() == b"".join(blobs)


def test_a_short_vectored_write_goes_on_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pwritev

    def at_most_5000(fd: int, views: list[memoryview], offset: int) -> int:
        return real(fd, [memoryview(b"".join(views))[:5000]], offset)

    monkeypatch.setattr(os, "pwritev", at_most_5000)
    path = tmp_path / "object"
    views = [memoryview(os.urandom(size)) for size in (3000, 4096, 9000)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        _appender._pwritev_all(fd, views, 10)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"\0" * 10 + b"".join(bytes(view) for view in views)
