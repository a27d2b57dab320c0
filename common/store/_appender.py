"""Streaming a body into a temp file, fast and ready for one final fsync.

A streamed object (a tus chunk of 8 MiB, a part) must be durable when its write
returns. Through the page cache that costs dearly: the final fsync waits for the whole
writeback, and ``dd bs=8M oflag=dsync`` reaches only about 190 MB/s on the test
machine's disk. Written with ``O_DIRECT`` from page-aligned buffers the same bytes go
to the device as they arrive, at over 1.2 GB/s with a flush per 8 MiB (measured with
``dd oflag=direct,dsync`` and in Python), and the final fsync is left with the size
and the few bytes of an unaligned tail.

:class:`DirectAppender` fills :data:`DIRECT_BUFFERS` aligned buffers in turn: while
up to three are written on worker threads the event loop fills the next, so the disk
works while the network still delivers. With one write in flight, each next write
waited for the event loop to notice the last one had ended, and a busy loop (an
upload's gateway also serves its events and requests) left the disk idle for more
than half of an 8 MiB chunk (tus benchmark, timed per write). A body read on a
thread (``_blocking_stream.py``) fills them there and has them written one at a time,
in order (:meth:`DirectAppender.take_full_in_order`), which this disk prefers.

Where ``O_DIRECT`` is refused (tmpfs, other systems) :class:`BufferedAppender` writes
through the page cache and starts the writeback at once (``sync_file_range``), which
keeps the final fsync short too.

Both only write; :func:`~common.store._localfs.finish_temp` makes the file durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

# O_DIRECT wants the buffer address, the length and the file offset aligned to the
# device's logical block; 4096 covers every block size in use (mmap is page aligned).
_ALIGN = 4096
_SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writeback, do not wait


class Appender(Protocol):
    """Bytes in, in order; a full buffer out to the file on a worker thread."""

    def fill(self, data: memoryview) -> int:
        """Copy as much of ``data`` as the current buffer takes; return how much."""
        ...

    def read_from(self, fd: int, position: int) -> int:
        """Read file ``fd`` from ``position`` into the current buffer, as much as it
        takes; return how much (0 at the end of the file)."""
        ...

    def fill_from(self, readinto: Callable[[memoryview], int]) -> int:
        """Let ``readinto`` (a blocking body's) fill the current buffer's room; return
        how much it read (0 at the body's end)."""
        ...

    @property
    def full(self) -> bool: ...

    @property
    def max_in_flight(self) -> int:
        """How many writes from :meth:`take_full` may run at once."""
        ...

    def take_full(self) -> Callable[[], None]:
        """The write of the full buffer (run it on a thread); filling goes on meanwhile
        in the next buffer. Before a further write is taken, wait for the oldest one
        while :attr:`max_in_flight` are running: its buffer is the one filled next."""
        ...

    def take_full_in_order(self) -> Callable[[], None]:
        """:meth:`take_full` for writes run one at a time, in the order taken. A write
        may then also write the buffers taken after it (one system call for them all:
        the disk writes big requests faster), which leaves the later ones nothing to do.
        """
        ...

    def finish(self) -> None:
        """Write what is buffered (blocking); the file then holds every byte filled."""
        ...

    def close(self) -> None: ...


def open_appender(handle: BinaryIO, path: Path, buffer_size: int) -> Appender:
    """The direct appender where the file system takes ``O_DIRECT``, else the buffered."""
    direct = DirectAppender.open(handle, path, buffer_size)
    return direct if direct is not None else BufferedAppender(handle, buffer_size)


class DirectAppender:
    def __init__(self, handle: BinaryIO, direct_fd: int, buffer_size: int) -> None:
        if buffer_size % _ALIGN:
            raise ValueError(f"buffer size {buffer_size} is not a multiple of {_ALIGN}")
        self._handle = handle
        self._fd = direct_fd
        self._buffers = tuple(_POOL.take(buffer_size) for _ in range(DIRECT_BUFFERS))
        self._current = 0
        self._used = 0
        self._offset = 0  # where the current buffer's first byte goes in the file
        # Taken by take_full_in_order, not written yet: (buffer, its length, offset).
        self._taken: deque[tuple[mmap.mmap, int, int]] = deque()
        self._taken_lock = threading.Lock()

    @classmethod
    def open(cls, handle: BinaryIO, path: Path, buffer_size: int) -> DirectAppender | None:
        flag = getattr(os, "O_DIRECT", 0)
        if not flag:
            return None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flag)
        except OSError:  # EINVAL: this file system does not do direct I/O
            return None
        return cls(handle, fd, buffer_size)

    def fill(self, data: memoryview) -> int:
        buffer = self._buffers[self._current]
        count = min(len(data), len(buffer) - self._used)
        buffer[self._used : self._used + count] = data[:count]
        self._used += count
        return count

    def fill_from(self, readinto: Callable[[memoryview], int]) -> int:
        count = readinto(memoryview(self._buffers[self._current])[self._used :])
        self._used += count
        return count

    def read_from(self, fd: int, position: int) -> int:
        # Straight into the aligned buffer, and with O_DIRECT when both ends are aligned:
        # bytes written with O_DIRECT are not in the page cache, and reading them
        # through it costs several times more than the disk does.
        room = memoryview(self._buffers[self._current])[self._used :]
        aligned = self._used % _ALIGN == 0 and position % _ALIGN == 0
        count = _pread_into(fd, room, position, direct=aligned)
        self._used += count
        return count

    @property
    def full(self) -> bool:
        return self._used == len(self._buffers[self._current])

    @property
    def max_in_flight(self) -> int:
        return DIRECT_BUFFERS - 1  # each at its own offset: they may run in any order

    def take_full(self) -> Callable[[], None]:
        buffer, offset = self._buffers[self._current], self._offset
        self._offset += self._used
        self._current, self._used = (self._current + 1) % DIRECT_BUFFERS, 0
        return lambda: self._write_direct(memoryview(buffer), offset)

    def take_full_in_order(self) -> Callable[[], None]:
        with self._taken_lock:
            self._taken.append((self._buffers[self._current], self._used, self._offset))
        self._offset += self._used
        self._current, self._used = (self._current + 1) % DIRECT_BUFFERS, 0
        return self._write_taken

    def _write_taken(self) -> None:
        with self._taken_lock:
            taken, self._taken = self._taken, deque()
        if not taken:
            return  # written with an earlier one
        views = [memoryview(buffer)[:used] for buffer, used, _ in taken]
        offset = taken[0][2]
        try:
            _pwritev_all(self._fd, views, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # as in _write_direct
                raise
            _pwritev_all(self._handle.fileno(), views, offset)

    def finish(self) -> None:
        view = memoryview(self._buffers[self._current])[: self._used]
        aligned = self._used - self._used % _ALIGN
        if aligned:
            self._write_direct(view[:aligned], self._offset)
        if aligned < self._used:  # the unaligned tail goes through the page cache
            _pwrite_all(self._handle.fileno(), view[aligned:], self._offset + aligned)
        self._offset += self._used
        self._used = 0

    def _write_direct(self, data: memoryview, offset: int) -> None:
        try:
            _pwrite_all(self._fd, data, offset)
        except OSError as exc:
            # A device whose block is larger than 4096 refuses the alignment: the same
            # bytes through the page cache (the final fsync covers them either way).
            if exc.errno != errno.EINVAL:
                raise
            _pwrite_all(self._handle.fileno(), data, offset)

    def close(self) -> None:
        """Only once no write is in flight."""
        os.close(self._fd)
        for buffer in self._buffers:
            _POOL.give(buffer)
        self._buffers = ()


class _BufferPool:
    """Aligned buffers kept between writes: a fresh mmap faults in each of its pages on
    first touch, which made filling it 4 times slower than filling a used one (measured).
    Never closed explicitly: ``mmap.close`` fails while a traceback still holds a view
    of one, and a dropped buffer is unmapped by the collector anyway."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            for index, buffer in enumerate(self._free):
                if len(buffer) == size:
                    return self._free.pop(index)
        return mmap.mmap(-1, size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)


# Buffers per streamed write: one filled while the others are written.
DIRECT_BUFFERS = 4
# Enough for a few concurrent uploads (16 of 1 MiB).
_POOL = _BufferPool(keep=16)


class BufferedAppender:
    def __init__(self, handle: BinaryIO, buffer_size: int) -> None:
        self._handle = handle
        self._size = buffer_size
        self._buffer = bytearray()

    def fill(self, data: memoryview) -> int:
        count = min(len(data), self._size - len(self._buffer))
        self._buffer += data[:count]
        return count

    def fill_from(self, readinto: Callable[[memoryview], int]) -> int:
        room = bytearray(self._size - len(self._buffer))
        count = readinto(memoryview(room))
        self._buffer += memoryview(room)[:count]
        return count

    def read_from(self, fd: int, position: int) -> int:
        data = os.pread(fd, self._size - len(self._buffer), position)
        self._buffer += data
        return len(data)

    @property
    def full(self) -> bool:
        return len(self._buffer) >= self._size

    @property
    def max_in_flight(self) -> int:
        return 1  # appends at the file's position: one at a time

    def take_full(self) -> Callable[[], None]:
        data, self._buffer = self._buffer, bytearray()
        return lambda: write_behind(self._handle, data)

    def take_full_in_order(self) -> Callable[[], None]:
        return self.take_full()

    def finish(self) -> None:
        if self._buffer:
            write_behind(self._handle, self._buffer)
            self._buffer = bytearray()

    def close(self) -> None:
        return None


def copy_all(handle: BinaryIO, path: Path, sources: Iterable[BinaryIO], buffer_size: int) -> None:
    """Append every source, in order, to the temp file ``handle`` at ``path`` (the
    assembly of a multipart upload, a compose), through :func:`open_appender`: a 1 GiB
    assembly is neither one long fsync of the page cache nor a slow read through it."""
    appender = open_appender(handle, path, buffer_size)
    try:
        for source in sources:
            position = 0
            while count := appender.read_from(source.fileno(), position):
                position += count
                if appender.full:
                    appender.take_full()()
        appender.finish()
    finally:
        appender.close()


def _pread_into(fd: int, room: memoryview, position: int, *, direct: bool) -> int:
    """``preadv`` with O_DIRECT set on ``fd`` or not (Linux lets a descriptor switch).
    The source's last block is short: O_DIRECT then returns what there is."""
    flag = getattr(os, "O_DIRECT", 0)
    if flag:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        wanted = flags | flag if direct else flags & ~flag
        if wanted != flags:
            with contextlib.suppress(OSError):  # a file system without direct I/O
                fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    try:
        return os.preadv(fd, [room], position)
    except OSError as exc:
        if exc.errno != errno.EINVAL or not direct:
            raise
        return _pread_into(fd, room, position, direct=False)  # an unaligned length


def _pwritev_all(fd: int, views: list[memoryview], offset: int) -> None:
    while views:
        written = os.pwritev(fd, views, offset)
        offset += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views = views[1:]
        if views and written:
            views = [views[0][written:], *views[1:]]


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _load_start_writeback() -> Callable[[int, int, int], None]:
    """Linux's sync_file_range(2) with SYNC_FILE_RANGE_WRITE: queue a range for writing
    to disk now, without waiting. Elsewhere a no-op (the final fsync does it all)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        sync_file_range = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    sync_file_range.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a hint: errors ignored

    return start


_start_writeback = _load_start_writeback()


def write_behind(handle: BinaryIO, data: bytes | bytearray) -> None:
    """Append ``data`` and start writing it back at once, so that the fsync ending a
    streamed object waits for its last bytes only."""
    start = handle.tell()
    handle.write(data)
    handle.flush()
    _start_writeback(handle.fileno(), start, len(data))
