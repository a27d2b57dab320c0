"""The durable writer on the folder store: parts, the tail, and the derived offset.

The same writer runs against MinIO in tests/integration (test_tus_s3.py); here the
folder store (which enforces S3's 5 MiB part minimum too) makes the rules fast to
check, crashes included.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from common.store import MIN_PART_SIZE, ObjectNotFound, PartTooSmall
from common.store.local import LocalStore
from gateway.tus.body import BodyInterrupted, read_body
from gateway.tus.chunks import ChunkWriter, load_state, part_sizes
from gateway.tus.layout import source_key, tail_key

pytestmark = pytest.mark.unit

MiB = 1024 * 1024
UPLOAD = "0123456789abcdef0123456789abcdef"
PART = MIN_PART_SIZE  # the smallest legal part keeps the test data small


def data_of(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


async def body(
    data: bytes, step: int = 256 * 1024, *, cut: str | None = None
) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), step):
        yield data[offset : offset + step]
    if cut is not None:
        raise BodyInterrupted("disconnect", len(data))


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "media")
    await store.ensure_ready()
    return store


async def write(
    store: LocalStore, multipart: object, data: bytes, length: int | None, *, cut: bool = False
) -> int:
    from common.store import MultipartUpload

    assert isinstance(multipart, MultipartUpload)
    state = await load_state(store, UPLOAD, multipart)
    writer = ChunkWriter(
        store,
        UPLOAD,
        multipart,
        state,
        part_size=PART,
        min_part=MIN_PART_SIZE,
        final_length=length,
    )
    result = await writer.write(body(data, cut="disconnect" if cut else None))
    assert result.start == state.offset
    assert (result.interrupted is not None) == cut
    after = await load_state(store, UPLOAD, multipart)
    assert after.offset == result.offset  # what we answer is what the store derives
    assert result.state_after(state) == after  # what a handed-over lock carries on with
    return result.offset


async def assembled(store: LocalStore, multipart: object) -> bytes:
    from common.store import MultipartUpload

    assert isinstance(multipart, MultipartUpload)
    parts = await store.list_parts(multipart)
    await store.complete_multipart(multipart, parts)
    return await store.read(source_key(UPLOAD))


async def test_small_chunks_collect_in_the_tail_then_become_parts(store: LocalStore) -> None:
    data = data_of(11 * MiB + 123)
    multipart = await store.create_multipart(source_key(UPLOAD))
    offset = 0
    for start in range(0, len(data), MiB):
        offset = await write(store, multipart, data[start : start + MiB], len(data))
        state = await load_state(store, UPLOAD, multipart)
        # Every part but the file's last is >= 5 MiB; below that, bytes wait in the tail.
        middle = state.parts[:-1] if offset == len(data) else state.parts
        assert all(part.size >= MIN_PART_SIZE for part in middle)
        assert state.tail_size < MIN_PART_SIZE
    assert offset == len(data)
    assert await assembled(store, multipart) == data
    assert [info.key async for info in store.list(f"uploads/{UPLOAD}/tail-")] == []


async def test_a_big_body_is_cut_into_parts_while_it_streams(store: LocalStore) -> None:
    data = data_of(3 * PART + 5)
    multipart = await store.create_multipart(source_key(UPLOAD))
    assert await write(store, multipart, data, len(data)) == len(data)
    sizes = [part.size for part in await store.list_parts(multipart)]
    assert sizes == [PART, PART, PART, 5]  # the last part may be tiny: it is the end
    assert await assembled(store, multipart) == data


async def test_an_interrupted_body_keeps_what_arrived(store: LocalStore) -> None:
    data = data_of(12 * MiB)
    multipart = await store.create_multipart(source_key(UPLOAD))
    # 6.5 MiB arrive, then the client is gone: a 5 MiB part and a 1.5 MiB tail are kept.
    offset = await write(store, multipart, data[: 6 * MiB + MiB // 2], len(data), cut=True)
    assert offset == 6 * MiB + MiB // 2
    state = await load_state(store, UPLOAD, multipart)
    assert (state.parts_size, state.tail_size) == (5 * MiB, MiB + MiB // 2)
    # 3 MiB more, then gone again: still below a part, so the tail grows.
    offset = await write(store, multipart, data[offset : offset + 3 * MiB], len(data), cut=True)
    state = await load_state(store, UPLOAD, multipart)
    assert (state.parts_size, state.tail_size) == (5 * MiB, 4 * MiB + MiB // 2)
    # The rest, in one go.
    assert await write(store, multipart, data[offset:], len(data)) == len(data)
    assert await assembled(store, multipart) == data


async def test_a_stale_tail_is_ignored(store: LocalStore) -> None:
    """Crash between 'tail folded into a part' and 'tail deleted': nothing counts twice."""
    data = data_of(12 * MiB)
    multipart = await store.create_multipart(source_key(UPLOAD))
    await write(store, multipart, data[: 2 * MiB], len(data))
    stale = await store.read(tail_key(UPLOAD, 0))
    await write(store, multipart, data[2 * MiB : 7 * MiB], len(data))  # folds the tail
    with pytest.raises(ObjectNotFound):
        await store.stat(tail_key(UPLOAD, 0))
    await store.put(tail_key(UPLOAD, 0), stale)  # as if the delete never happened
    state = await load_state(store, UPLOAD, multipart)
    assert state.offset == 7 * MiB
    assert await write(store, multipart, data[7 * MiB :], len(data)) == len(data)
    assert await assembled(store, multipart) == data


async def test_deferred_length_ends_with_the_tail_as_the_last_part(store: LocalStore) -> None:
    data = data_of(7 * MiB)
    multipart = await store.create_multipart(source_key(UPLOAD))
    await write(store, multipart, data[: 6 * MiB], None)
    await write(store, multipart, data[6 * MiB :], None)
    state = await load_state(store, UPLOAD, multipart)
    assert (state.parts_size, state.tail_size) == (5 * MiB, 2 * MiB)
    # The length becomes known with no more bytes: the tail becomes the last part.
    assert await write(store, multipart, b"", len(data)) == len(data)
    assert await assembled(store, multipart) == data


async def test_the_writer_stops_when_its_lock_is_lost(store: LocalStore) -> None:
    multipart = await store.create_multipart(source_key(UPLOAD))
    state = await load_state(store, UPLOAD, multipart)

    def lost() -> None:
        raise RuntimeError("lock lost")

    writer = ChunkWriter(
        store, UPLOAD, multipart, state, part_size=PART, min_part=MIN_PART_SIZE,
        final_length=None, guard=lost,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="lock lost"):
        await writer.write(body(data_of(PART)))
    assert (await load_state(store, UPLOAD, multipart)).offset == 0


async def test_the_folder_store_refuses_small_middle_parts_like_s3(store: LocalStore) -> None:
    multipart = await store.create_multipart(source_key(UPLOAD))
    small = await store.upload_part(multipart, 1, b"x" * MiB)
    last = await store.upload_part(multipart, 2, b"y")
    with pytest.raises(PartTooSmall):
        await store.complete_multipart(multipart, [small, last])


def test_part_sizes_grow_to_fit_the_part_limit() -> None:
    assert part_sizes(8 * MiB, 20 * 1024**3) == (8 * MiB, MIN_PART_SIZE)
    size, floor = part_sizes(8 * MiB, 200 * 1024**3)
    assert floor > MIN_PART_SIZE
    assert 200 * 1024**3 / floor <= 9000
    assert size >= floor


async def test_read_body_cuts_at_the_limit_and_reports_why_it_ended() -> None:
    messages = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"defgh", "more_body": True},
        {"type": "http.request", "body": b"never read", "more_body": False},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    chunks = [chunk async for chunk in read_body(receive, limit=5, timeout_s=1)]
    assert chunks == [b"abc", b"de"]
    assert len(messages) == 1  # the rest was not even received

    async def gone() -> dict[str, object]:
        return {"type": "http.disconnect"}

    with pytest.raises(BodyInterrupted) as exc:
        [chunk async for chunk in read_body(gone, limit=5, timeout_s=1)]
    assert exc.value.reason == "disconnect"

    async def silent() -> dict[str, object]:
        await asyncio.Event().wait()
        raise AssertionError

    with pytest.raises(BodyInterrupted) as exc:
        [chunk async for chunk in read_body(silent, limit=5, timeout_s=0.05)]
    assert exc.value.reason == "timeout"
