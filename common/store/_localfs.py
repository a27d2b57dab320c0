"""Blocking filesystem primitives for the folder store (called on worker threads).

Layout under the root::

    {key}                         object bytes, e.g. live/42/seg_00017.m4s
    {dir}/.{name}.ctype           content type, only when it differs from DEFAULT_TYPES
    {dir}/.{name}.{token}.tmp     a write in progress (same folder: os.replace is atomic)
    .multipart/{upload_id}/       upload.json and part-00001 ... (see local.py)

Keys never have hidden segments (keys.py), so none of these names can collide with
an object.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from common.store.base import DEFAULT_CONTENT_TYPE, ObjectInfo
from common.store.errors import InvalidKey, ObjectNotFound

# A fixed table rather than `mimetypes`, whose answer depends on the host's
# /etc/mime.types (Debian maps .ts to Qt Linguist): the answer must not change
# between the write and a later read, or objects would lose their type.
DEFAULT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".json": "application/json",
}

COPY_BUFFER = 1024 * 1024


def default_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return DEFAULT_TYPES.get(suffix, DEFAULT_CONTENT_TYPE)


def sidecar_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.ctype")


def stat_etag(st: os.stat_result) -> str:
    # Every write is a new inode (os.replace), so these four change with the content.
    # No hashing of the bytes: a 10 GiB upload would cost seconds.
    token = f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
    return hashlib.blake2b(token.encode(), digest_size=16).hexdigest()


def info_from_stat(key: str, st: os.stat_result, content_type: str | None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        etag=stat_etag(st),
        content_type=content_type,
        last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )


def read_content_type(path: Path) -> str:
    try:
        return sidecar_path(path).read_text("utf-8").strip() or DEFAULT_CONTENT_TYPE
    except (FileNotFoundError, NotADirectoryError):
        return default_type(path.name)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable (POSIX: fsync the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(root: Path, path: Path, key: str) -> None:
    """``mkdir -p`` below ``root`` that fsyncs each parent it adds an entry to."""
    if path.is_dir():
        return
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            if not current.is_dir():
                conflict = current.relative_to(root).as_posix()
                raise InvalidKey(
                    f"key {key!r} needs {conflict!r} as a folder, but an object has that key "
                    "(the folder store cannot hold both 'a' and 'a/b')"
                ) from None
            continue
        except NotADirectoryError:
            raise InvalidKey(f"key {key!r} runs through an existing object") from None
        fsync_dir(current.parent)


def open_temp(
    root: Path, final: Path, key: str, *, make_parents: bool = True
) -> tuple[BinaryIO, Path]:
    """A new hidden temp file beside ``final``, creating its folders if asked.

    ``make_parents=False`` for multipart parts: a missing folder means the upload
    was aborted, and must not be brought back.
    """
    for _ in range(3):
        if make_parents:
            make_dirs(root, final.parent, key)
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(8)}.tmp")
        try:
            # 'xb': never reuse someone else's temp file.
            return tmp.open("xb"), tmp
        except FileNotFoundError:
            if not make_parents:
                raise
            # A concurrent delete pruned the empty folder: make it again.
    raise InvalidKey(f"could not create the folder for {key!r}")


def write_temp(
    root: Path, final: Path, key: str, data: bytes, *, make_parents: bool, sync: bool = True
) -> Path:
    """A temp file beside ``final`` holding ``data``, fsynced unless ``sync=False``."""
    handle, tmp = open_temp(root, final, key, make_parents=make_parents)
    try:
        handle.write(data)
        finish_temp(handle, sync=sync)
    except BaseException:
        discard_temp(handle, tmp)
        raise
    return tmp


def finish_temp(handle: BinaryIO, *, sync: bool = True) -> None:
    handle.flush()
    if sync:
        os.fsync(handle.fileno())  # success means durable: data first, then the rename
    handle.close()


def discard_temp(handle: BinaryIO, tmp: Path) -> None:
    handle.close()
    tmp.unlink(missing_ok=True)


def atomic_write_small(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    with tmp.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def commit(
    tmp: Path, final: Path, key: str, content_type: str, *, sync: bool = True
) -> os.stat_result:
    """Atomically publish ``tmp`` as ``final`` with its content type; durable on return
    (unless ``sync=False``: then only atomic).

    The content type (a sidecar) and the bytes are two renames: a concurrent reader
    can pair new bytes with the old type for a moment, never see partial bytes.
    """
    sidecar = sidecar_path(final)
    custom_type = content_type != default_type(final.name)
    if custom_type:
        atomic_write_small(sidecar, content_type.encode("utf-8"))
    try:
        tmp.replace(final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in {errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST}:
            raise InvalidKey(
                f"key {key!r} is a folder of other objects in the folder store"
            ) from None
        raise
    if not custom_type:
        sidecar.unlink(missing_ok=True)
    if sync:
        fsync_dir(final.parent)
    return final.stat()


def open_object(path: Path, key: str) -> tuple[BinaryIO, os.stat_result]:
    try:
        handle = path.open("rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ObjectNotFound(key) from None
    # fstat, not stat: describes the inode we opened even if it is replaced meanwhile.
    return handle, os.fstat(handle.fileno())


def stat_object(path: Path, key: str) -> os.stat_result:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ObjectNotFound(key) from None
    if not path.is_file():
        raise ObjectNotFound(key)
    return st


def walk(root: Path, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """(key, stat) of every object whose key starts with ``prefix``, unordered."""
    folder, _, name_start = prefix.rpartition("/")
    start = root.joinpath(*folder.split("/")) if folder else root
    base = f"{folder}/" if folder else ""
    try:
        entries = list(os.scandir(start))
    except (FileNotFoundError, NotADirectoryError):
        return
    stack = [(base, entry) for entry in entries if entry.name.startswith(name_start)]
    while stack:
        key_base, entry = stack.pop()
        if entry.name.startswith("."):
            continue  # temp files, sidecars, .multipart
        key = key_base + entry.name
        # follow_symlinks=False: a link planted in the root must not lead outside it.
        if entry.is_dir(follow_symlinks=False):
            try:
                stack.extend((f"{key}/", child) for child in os.scandir(entry.path))
            except FileNotFoundError:
                continue
        elif entry.is_file(follow_symlinks=False):
            try:
                yield key, entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we walked


def remove_object(root: Path, path: Path) -> bool:
    """Unlink an object and its sidecar, then prune empty folders. True if it existed."""
    try:
        path.unlink()
        existed = True
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        existed = False  # nothing there, or a folder of other objects: no such object
    except PermissionError:
        if not path.is_dir():  # macOS reports unlink() of a folder as EPERM
            raise
        existed = False
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        sidecar_path(path).unlink()
    if existed:
        prune_empty(root, path.parent)
    return existed


def prune_empty(root: Path, folder: Path) -> None:
    """Remove empty folders from ``folder`` up to (not including) ``root``."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (or a writer just used it): stop here
        folder = folder.parent
    fsync_dir(folder if folder.exists() else root)
