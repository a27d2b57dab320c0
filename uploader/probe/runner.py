"""The probe's parent side: sniff, spawn the child, serve its reads, enforce its deadline.

The child (child.py) sees the upload only through this process: it asks for byte
ranges, we read them from the object store (1 MiB blocks, a few cached, since FFmpeg
reads in small steps) and answer — up to ``READ_BUDGET`` bytes in all. The child
gets no environment but ``PATH``/``PYTHONPATH`` (no store keys), runs in its own
session, and is killed when the wall-clock limit passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Final

from common.logs import get_logger
from common.settings import Settings
from common.store import ObjectStore
from uploader.probe import ipc
from uploader.probe.sniff import HEAD_BYTES, sniff
from uploader.probe.verdict import Code, Rejected, Verdict, from_json

__all__ = ["READ_BUDGET", "probe_object"]

log = get_logger(__name__)

BLOCK: Final = 1024 * 1024
CACHED_BLOCKS: Final = 16
# A sane probe reads the header, the index and a few packets: a few MiB, or the
# moov at the end of a long MP4. More than this is a file built to keep us busy.
READ_BUDGET: Final = 256 * 1024 * 1024
_PACKAGE_ROOT: Final = Path(__file__).resolve().parents[2]
_STDERR_KEEP: Final = 16 * 1024


class _BlockReader:
    def __init__(self, store: ObjectStore, key: str, size: int) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.served = 0

    async def _block(self, index: int) -> bytes:
        if index in self._blocks:
            self._blocks.move_to_end(index)
            return self._blocks[index]
        start = index * BLOCK
        end = min(start + BLOCK, self._size) - 1
        data = await self._store.read_range(self._key, start, end)
        self._blocks[index] = data
        if len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return data

    async def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset, ipc.MAX_READ))
        out = bytearray()
        while len(out) < length:
            position = offset + len(out)
            block = await self._block(position // BLOCK)
            start = position % BLOCK
            out += block[start : start + length - len(out)]
        self.served += len(out)
        return bytes(out)


def _child_env() -> dict[str, str]:
    # Nothing of ours: no VIDEOPICK_* (store keys, database URL), no proxies.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(_PACKAGE_ROOT),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


async def probe_object(store: ObjectStore, key: str, size: int, settings: Settings) -> Verdict:
    """Examine the object ``key`` of ``size`` bytes; never raises for bad media."""
    if size == 0:
        return Rejected(Code.EMPTY, "0 bytes")
    head = await store.read_range(key, 0, min(size, HEAD_BYTES) - 1)
    container = sniff(head)
    if container is None:
        # Text, playlists, images…: FFmpeg never sees them.
        return Rejected(Code.NOT_MEDIA, f"magic {head[:12]!r}")
    return await _run_child(store, key, size, container.demuxer, settings)


async def _run_child(
    store: ObjectStore, key: str, size: int, demuxer: str, settings: Settings
) -> Verdict:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uploader.probe.child",
        f"--size={size}",
        f"--demuxer={demuxer}",
        f"--max-duration={settings.probe_max_duration_s}",
        f"--memory-mb={settings.probe_memory_mb}",
        f"--cpu-s={settings.probe_cpu_s}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
        cwd=str(_PACKAGE_ROOT),
        start_new_session=True,
    )
    stderr_task = asyncio.create_task(_keep_stderr(process))
    reader = _BlockReader(store, key, size)
    try:
        async with asyncio.timeout(settings.probe_timeout_s):
            verdict = await _serve(process, reader)
    except TimeoutError:
        verdict = Rejected(Code.UNREADABLE, f"probe over {settings.probe_timeout_s} s")
    except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
        verdict = Rejected(Code.UNREADABLE, "the probe died")
    finally:
        await _stop(process)
        stderr = await stderr_task
    if isinstance(verdict, Rejected) and verdict.code == Code.UNREADABLE:
        log.warning(
            "probe failed",
            key=key,
            detail=verdict.detail,
            returncode=process.returncode,
            stderr=stderr[-2000:],
        )
    return verdict


async def _serve(process: asyncio.subprocess.Process, reader: _BlockReader) -> Verdict:
    assert process.stdout is not None
    assert process.stdin is not None
    while True:
        kind = await process.stdout.readexactly(1)
        if kind == ipc.READ:
            offset, length = ipc.unpack_request(await process.stdout.readexactly(ipc.REQUEST_SIZE))
            if reader.served + length > READ_BUDGET:
                return Rejected(Code.UNREADABLE, f"the probe read over {READ_BUDGET} bytes")
            process.stdin.write(ipc.pack_data(await reader.read(offset, length)))
            await process.stdin.drain()
        elif kind == ipc.RESULT:
            length = ipc.unpack_length(await process.stdout.readexactly(ipc.LENGTH_SIZE))
            if length > ipc.MAX_RESULT:
                return Rejected(Code.UNREADABLE, "oversized verdict")
            payload = await process.stdout.readexactly(length)
            try:
                return from_json(json.loads(payload))
            except ValueError:
                return Rejected(Code.UNREADABLE, "unreadable verdict")
        else:
            return Rejected(Code.UNREADABLE, f"protocol error {kind!r}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: nothing survives
    if process.stdin is not None:
        process.stdin.close()
    await process.wait()


async def _keep_stderr(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    kept = bytearray()
    while chunk := await process.stderr.read(65536):
        kept += chunk
        del kept[:-_STDERR_KEEP]
    return kept.decode("utf-8", "replace")
