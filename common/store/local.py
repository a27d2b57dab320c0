"""The folder backend: the embedded default of ``make run`` and of most tests.

Writes go to a hidden temp file in the object's own folder, are fsynced, then
``os.replace``d into place and the folder fsynced: readers never see half an object,
and a returned write survives a power cut. Blocking calls run on worker threads.
Several processes may share one root (every component of ``make run`` does).

Limits of a folder compared with S3 (both refused with :class:`InvalidKey`): an
object "a" and an object "a/b" cannot coexist, since "a" would be a file and a folder.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import re
import shutil
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

from common.store import _localfs as fs
from common.store._appender import Appender, copy_all, open_appender
from common.store._blocking_stream import write_blocking
from common.store.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    BlockingBody,
    Body,
    MultipartUpload,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
    PartInfo,
    aiter_body,
    check_expiry,
    check_length,
    check_part_number,
    check_part_order,
    check_part_sizes,
    check_range,
)
from common.store.errors import (
    InvalidKey,
    InvalidPart,
    LengthMismatch,
    UploadNotFound,
)
from common.store.keys import validate_key, validate_prefix

__all__ = ["LocalStore"]

T = TypeVar("T")

# Gather small async chunks into one write per thread hop (DIRECT_BUFFERS of them per
# streamed write: one fills while the others are written). A streamed write's last
# buffer is written after its last byte, before the answer, so it is smaller than
# an assembly's: 1 MiB beat 2 MiB on tus PATCHes of 8 MiB (~1 ms less per chunk).
STREAM_BUFFER = 1024 * 1024
# A streamed body's first bytes held (as they came) while its temp file is opened.
OPEN_BACKLOG = 4 * 1024 * 1024
WRITE_BUFFER = 2 * 1024 * 1024
MULTIPART_DIR = ".multipart"
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART_NAME = re.compile(r"part-(\d{5})")


async def _run(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Its caller may be gone (cancelled): the outcome is taken here, never lost in a
    "never retrieved" warning."""
    if not task.cancelled():
        task.exception()


class _TempStream:
    """A temp file being streamed into, for :meth:`LocalStore._stream_to_temp`.

    The file is opened on a thread while the first chunks wait as they came; full
    buffers are written on threads, up to the appender's ``max_in_flight`` at once.
    Every blocking step is awaited through a shield: a cancelled caller must not close
    the file under a thread still writing to it, nor strand the temp file once every
    byte is in.
    """

    def __init__(self, opening: asyncio.Future[tuple[BinaryIO, Path, Appender]]) -> None:
        self._opening = opening
        self._opened: tuple[BinaryIO, Path, Appender] | None = None
        self._backlog: list[bytes] = []
        self._backlog_size = 0
        self._steps: deque[asyncio.Future[Any]] = deque()

    async def add(self, chunk: bytes) -> None:
        if self._opened is None:
            self._backlog.append(chunk)
            self._backlog_size += len(chunk)
            if not self._opening.done() and self._backlog_size < OPEN_BACKLOG:
                return
            await self._open()
        else:
            await self._fill(chunk)

    async def written(self) -> None:
        """Until every byte added is in the file (all but the unaligned tail)."""
        if self._opened is None:
            await self._open()
        while self._steps:
            await asyncio.shield(self._steps[0])
            self._steps.popleft()

    async def finish(self, publish: Callable[[Path], T]) -> T:
        assert self._opened is not None
        handle, tmp, appender = self._opened

        def finish() -> T:
            appender.finish()
            fs.finish_temp(handle)
            return publish(tmp)

        self._steps.append(asyncio.ensure_future(_run(finish)))
        published: T = await asyncio.shield(self._steps[0])
        appender.close()
        return published

    async def discard(self) -> None:
        opening = self._opening
        await asyncio.gather(opening, *self._steps, return_exceptions=True)
        if opening.cancelled() or opening.exception() is not None:
            return
        handle, tmp, appender = opening.result()
        appender.close()
        await _run(lambda: fs.discard_temp(handle, tmp))

    async def _open(self) -> None:
        self._opened = await asyncio.shield(self._opening)
        backlog, self._backlog = self._backlog, []
        for chunk in backlog:
            await self._fill(chunk)

    async def _fill(self, chunk: bytes) -> None:
        assert self._opened is not None
        appender = self._opened[2]
        view = memoryview(chunk)
        while view:
            view = view[appender.fill(view) :]
            if appender.full:
                while len(self._steps) >= appender.max_in_flight:
                    await asyncio.shield(self._steps[0])  # popped once it is done
                    self._steps.popleft()
                self._steps.append(asyncio.ensure_future(_run(appender.take_full())))


class LocalStore(ObjectStore):
    """Objects as files under ``root``.

    ``url_base`` prefixes :meth:`presigned_get_url`: the gateway serves that path
    from this folder (with its own auth), since no other component serves HTTP.
    """

    def __init__(self, root: Path, *, url_base: str = "/media") -> None:
        self.root = root.resolve()
        self.url_base = url_base.rstrip("/")

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        validate_key(key)
        # Safe: validation refused "..", ".", empty and absolute segments.
        return self.root.joinpath(*key.split("/"))

    async def ensure_ready(self) -> None:
        await _run(lambda: self.root.mkdir(parents=True, exist_ok=True))

    async def close(self) -> None:
        return None

    # -- writing ------------------------------------------------------------------

    async def _write(
        self,
        key: str,
        final: Path,
        data: Body,
        length: int | None,
        publish: Callable[[Path], T],
        *,
        make_parents: bool = True,
        sync: bool = True,
        check: Callable[[], None] = lambda: None,
    ) -> T:
        """Write ``data`` to a fsynced temp file beside ``final``, then ``publish(tmp)``.

        ``check()`` runs first, on the same worker thread as the temp file's creation.
        """
        if isinstance(data, bytes):
            body = data

            def write_all() -> T:  # one thread hop: a live segment's latency matters
                check()
                check_length(key, length, len(body))
                return publish(
                    fs.write_temp(self.root, final, key, body, make_parents=make_parents, sync=sync)
                )

            return await _run(write_all)

        return await self._stream_to_temp(
            key, final, data, length, make_parents=make_parents, check=check, publish=publish
        )

    async def _stream_to_temp(
        self,
        key: str,
        final: Path,
        data: Body,
        length: int | None,
        *,
        make_parents: bool,
        check: Callable[[], None],
        publish: Callable[[Path], T],
    ) -> T:
        """Stream ``data`` into a temp file, make it durable and ``publish`` it.

        Three thread hops for any size: the check with the file's creation, the full
        buffers' writes, and the last buffer with the fsync and the publish (each hop
        costs the event loop and, on a busy machine, a wait for a free core). The
        first hop runs while the body's first chunks arrive: they wait as they came
        (no copy, up to :data:`OPEN_BACKLOG` bytes), so the disk starts sooner.
        """

        if isinstance(data, BlockingBody):
            return await self._stream_blocking(
                key, final, data, length, make_parents=make_parents, check=check, publish=publish
            )

        def open_checked() -> tuple[BinaryIO, Path, Appender]:
            check()
            handle, tmp = fs.open_temp(self.root, final, key, make_parents=make_parents)
            try:
                return handle, tmp, open_appender(handle, tmp, STREAM_BUFFER)
            except BaseException:
                fs.discard_temp(handle, tmp)
                raise

        stream = _TempStream(asyncio.ensure_future(_run(open_checked)))
        try:
            total = 0
            async for chunk in aiter_body(data):
                total += len(chunk)
                if length is not None and total > length:
                    # Stop at once: a lying length must not let a client fill the disk.
                    raise LengthMismatch(f"body for {key!r} announced {length} bytes, sent more")
                await stream.add(chunk)
            await stream.written()
            check_length(key, length, total)
            return await stream.finish(publish)
        except BaseException:
            await stream.discard()
            raise

    async def _stream_blocking(
        self,
        key: str,
        final: Path,
        body: BlockingBody,
        length: int | None,
        *,
        make_parents: bool,
        check: Callable[[], None],
        publish: Callable[[Path], T],
    ) -> T:
        """:meth:`_stream_to_temp` for a body read on a thread: one hop in all."""

        def stream() -> T:
            check()
            handle, tmp = fs.open_temp(self.root, final, key, make_parents=make_parents)
            try:
                appender = open_appender(handle, tmp, STREAM_BUFFER)
                try:
                    write_blocking(appender, body, key, length, tmp.read_bytes)
                finally:
                    appender.close()
                fs.finish_temp(handle)
                return publish(tmp)
            except BaseException:
                fs.discard_temp(handle, tmp)
                raise

        # Shielded: a cancelled caller leaves the thread to end with the body (its end,
        # or its reader giving up) and to publish or drop the file by itself.
        writing = asyncio.ensure_future(_run(stream))
        writing.add_done_callback(_retrieve)
        return await asyncio.shield(writing)

    async def put(
        self,
        key: str,
        data: Body,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        length: int | None = None,
        durable: bool = True,
    ) -> ObjectInfo:
        final = self._path(key)
        st = await self._write(
            key,
            final,
            data,
            length,
            lambda tmp: fs.commit(tmp, final, key, content_type, sync=durable),
            sync=durable,
        )
        return fs.info_from_stat(key, st, content_type)

    # -- reading ------------------------------------------------------------------

    async def _open(
        self, key: str, start: int | None, end: int | None, chunk_size: int
    ) -> ObjectStream:
        path = self._path(key)

        def open_at() -> tuple[BinaryIO, ObjectInfo]:
            handle, st = fs.open_object(path, key)
            try:
                if start is not None and end is not None:
                    check_range(key, st.st_size, start, end)
                    handle.seek(start)
                info = fs.info_from_stat(key, st, fs.read_content_type(path))
            except BaseException:
                handle.close()
                raise
            return handle, info

        handle, info = await _run(open_at)
        first = 0 if start is None else start
        last = info.size - 1 if end is None else end
        return ObjectStream(
            info=info, start=first, end=last, reader=handle, run=_run, chunk_size=chunk_size
        )

    async def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectStream:
        return await self._open(key, None, None, chunk_size)

    async def get_range(
        self, key: str, start: int, end_inclusive: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ObjectStream:
        return await self._open(key, start, end_inclusive, chunk_size)

    async def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)

        def stat() -> ObjectInfo:
            st = fs.stat_object(path, key)
            return fs.info_from_stat(key, st, fs.read_content_type(path))

        return await _run(stat)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        found = await _run(lambda: sorted(fs.walk(self.root, prefix)))
        for key, st in found:
            yield fs.info_from_stat(key, st, None)

    # -- deleting -----------------------------------------------------------------

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await _run(lambda: fs.remove_object(self.root, path))

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if not prefix:
            raise InvalidKey("delete_prefix refuses the empty prefix (it would wipe the store)")

        def remove_all() -> int:
            return sum(
                fs.remove_object(self.root, self.root.joinpath(*key.split("/")))
                for key, _ in fs.walk(self.root, prefix)
            )

        return await _run(remove_all)

    async def presigned_get_url(self, key: str, expires_s: int = 3600) -> str:
        validate_key(key)
        check_expiry(expires_s)
        return f"{self.url_base}/{quote(key, safe='/')}"

    # -- multipart ------------------------------------------------------------------

    def _upload_dir(self, upload: MultipartUpload) -> Path:
        # The id becomes a folder name: accept only what create_multipart makes.
        if not _UPLOAD_ID.fullmatch(upload.upload_id):
            raise UploadNotFound(f"unknown upload {upload.upload_id!r}")
        return self.root / MULTIPART_DIR / upload.upload_id

    def _check_upload(self, upload: MultipartUpload) -> tuple[Path, str]:
        """(folder, content type) of a live upload; blocking."""
        folder = self._upload_dir(upload)
        try:
            meta = json.loads((folder / "upload.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(f"unknown upload {upload.upload_id!r}") from None
        if meta.get("key") != upload.key:
            raise UploadNotFound(f"upload {upload.upload_id!r} is not for {upload.key!r}")
        return folder, str(meta.get("content_type", DEFAULT_CONTENT_TYPE))

    async def create_multipart(
        self, key: str, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> MultipartUpload:
        validate_key(key)
        upload = MultipartUpload(upload_id=uuid.uuid4().hex, key=key)
        folder = self._upload_dir(upload)
        meta = json.dumps({"key": key, "content_type": content_type}).encode()

        def create() -> None:
            fs.make_dirs(self.root, folder, key)
            fs.atomic_write_small(folder / "upload.json", meta)
            fs.fsync_dir(folder)

        await _run(create)
        return upload

    async def upload_part(
        self,
        upload: MultipartUpload,
        part_number: int,
        data: Body,
        length: int | None = None,
    ) -> PartInfo:
        check_part_number(part_number)
        folder = self._upload_dir(upload)
        final = folder / f"part-{part_number:05d}"

        def check() -> None:
            self._check_upload(upload)

        def publish(tmp: Path) -> os.stat_result:
            tmp.replace(final)  # a re-sent part replaces the old one whole
            fs.fsync_dir(folder)
            return final.stat()

        try:
            st = await self._write(
                upload.key,
                final,
                data,
                length,
                publish,
                make_parents=False,
                check=check,
            )
        except FileNotFoundError:
            raise UploadNotFound(f"upload {upload.upload_id!r} was aborted") from None
        return PartInfo(number=part_number, etag=fs.stat_etag(st), size=st.st_size)

    def _parts(self, folder: Path) -> builtins.list[PartInfo]:
        parts = []
        for entry in os.scandir(folder):
            match = _PART_NAME.fullmatch(entry.name)
            if match:
                st = entry.stat()
                parts.append(PartInfo(int(match[1]), fs.stat_etag(st), st.st_size))
        return sorted(parts, key=lambda part: part.number)

    async def list_parts(self, upload: MultipartUpload) -> builtins.list[PartInfo]:
        def list_all() -> builtins.list[PartInfo]:
            folder, _ = self._check_upload(upload)
            return self._parts(folder)

        return await _run(list_all)

    async def complete_multipart(
        self, upload: MultipartUpload, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        check_part_order(parts)
        final = self._path(upload.key)

        def assemble() -> tuple[Path, str]:
            folder, content_type = self._check_upload(upload)
            stored = {part.number: part for part in self._parts(folder)}
            for part in parts:
                have = stored.get(part.number)
                if have is None:
                    raise InvalidPart(f"part {part.number} was never uploaded")
                if have.etag != part.etag:
                    raise InvalidPart(f"part {part.number} etag {part.etag!r} does not match")
            check_part_sizes([(f"part {p.number}", stored[p.number].size) for p in parts])
            handle, tmp = fs.open_temp(self.root, final, upload.key)
            try:
                with contextlib.ExitStack() as sources:
                    copy_all(
                        handle,
                        tmp,
                        (
                            sources.enter_context((folder / f"part-{p.number:05d}").open("rb"))
                            for p in parts
                        ),
                        WRITE_BUFFER,
                    )
                fs.finish_temp(handle)
            except BaseException:
                fs.discard_temp(handle, tmp)
                raise
            return tmp, content_type

        tmp, content_type = await _run(assemble)
        st = await _run(lambda: fs.commit(tmp, final, upload.key, content_type))
        await self.abort_multipart(upload)
        return fs.info_from_stat(upload.key, st, content_type)

    async def list_multipart(self, key: str) -> builtins.list[MultipartUpload]:
        validate_key(key)

        def scan() -> builtins.list[MultipartUpload]:
            found = []
            try:
                entries = builtins.list(os.scandir(self.root / MULTIPART_DIR))
            except FileNotFoundError:
                return []
            for entry in entries:
                if not _UPLOAD_ID.fullmatch(entry.name):
                    continue
                try:
                    meta = json.loads((Path(entry.path) / "upload.json").read_bytes())
                except (FileNotFoundError, NotADirectoryError, ValueError):
                    continue  # being created or removed right now
                if meta.get("key") == key:
                    found.append(MultipartUpload(upload_id=entry.name, key=key))
            return sorted(found, key=lambda upload: upload.upload_id)

        return await _run(scan)

    async def abort_multipart(self, upload: MultipartUpload) -> None:
        def abort() -> None:
            try:
                folder, _ = self._check_upload(upload)
            except UploadNotFound:
                return  # gone already, or not this key's: like S3, nothing to do
            shutil.rmtree(folder, ignore_errors=True)

        await _run(abort)

    async def compose(
        self,
        dest: str,
        sources: Sequence[str],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        final = self._path(dest)
        paths = [self._path(source) for source in sources]
        if not paths:
            raise InvalidPart("compose needs at least one source")

        def concatenate() -> Path:
            handles: list[BinaryIO] = []
            try:
                sizes = []
                for source, path in zip(sources, paths, strict=True):
                    handle, st = fs.open_object(path, source)
                    handles.append(handle)
                    sizes.append((f"source {source!r}", st.st_size))
                check_part_sizes(sizes)
                target, tmp = fs.open_temp(self.root, final, dest)
                try:
                    copy_all(target, tmp, handles, WRITE_BUFFER)
                    fs.finish_temp(target)
                except BaseException:
                    fs.discard_temp(target, tmp)
                    raise
                return tmp
            finally:
                for handle in handles:
                    handle.close()

        tmp = await _run(concatenate)
        st = await _run(lambda: fs.commit(tmp, final, dest, content_type))
        return fs.info_from_stat(dest, st, content_type)
