"""Running one job's child process from the worker's event loop.

The child (``python -m transcoder.child``) gets its :class:`JobSpec` on stdin and
talks back in JSON lines on stdout (:mod:`transcoder.protocol`). The worker only
waits on a pipe, so its loop keeps heartbeating JetStream and publishing progress.
A child that says nothing for ``stall_timeout_s`` is killed; so is one whose job is
cancelled (the component shutting down). Whatever kills a child — us, the OOM
killer, an operator's ``kill -9`` — the job fails as transient and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec

from common.logs import get_logger
from transcoder.errors import PoisonInputError, TransientJobError
from transcoder.protocol import Failure, JobSpec, Progress, Result, decode_message, encode

__all__ = ["ChildProcess", "run_child"]

log = get_logger(__name__)

# One protocol line (a Result with many renditions and thumbnails) stays far below this.
LINE_LIMIT: Final = 4 * 1024 * 1024
KILL_WAIT_S: Final = 10.0

OnProgress = Callable[[Progress], Awaitable[None]]


class ChildProcess:
    """A started child; ``pid`` is public so operators (and tests) can find it."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    async def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), KILL_WAIT_S)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


async def _read_messages(
    stdout: asyncio.StreamReader, on_progress: OnProgress, stall_timeout_s: float
) -> tuple[Result | None, Failure | None]:
    """Protocol lines until the child closes its stdout (it exits, or is killed)."""
    result: Result | None = None
    failure: Failure | None = None
    while True:
        try:
            line = await asyncio.wait_for(stdout.readline(), stall_timeout_s)
        except TimeoutError as exc:
            raise TransientJobError(
                f"the job stalled: no progress for {stall_timeout_s:.0f} s"
            ) from exc
        if not line:
            return result, failure
        try:
            message = decode_message(line)
        except msgspec.DecodeError:
            log.warning("unreadable line from the job's process", line=line[:200])
            continue
        if isinstance(message, Progress):
            await on_progress(message)
        elif isinstance(message, Result):
            result = message
        else:
            failure = message


async def run_child(
    spec: JobSpec,
    *,
    on_progress: OnProgress,
    stall_timeout_s: float,
    on_start: Callable[[ChildProcess], None] | None = None,
) -> Result:
    """Run ``spec`` in a child; its Result, or PoisonInputError / TransientJobError."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "transcoder.child",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,  # the child's logs go where ours go
        limit=LINE_LIMIT,
        env={
            **os.environ,
            "TRANSCODER_PARENT_PID": str(os.getpid()),
            # glibc reserves up to 8 malloc arenas of 64 MiB per core; with a thread per
            # rendition and x264's own, that is gigabytes of address space the memory
            # cap would count. Four arenas cost nothing measurable here.
            "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "4"),
        },
    )
    child = ChildProcess(process)
    if on_start is not None:
        on_start(child)
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(encode(spec))
        await process.stdin.drain()
        process.stdin.close()
        result, failure = await _read_messages(process.stdout, on_progress, stall_timeout_s)
        code = await process.wait()
    except (BrokenPipeError, ConnectionResetError) as exc:
        # The child died before reading its spec; its exit status says why.
        code = await process.wait()
        raise TransientJobError(f"the job's process {_describe_exit(code)}") from exc
    finally:
        await child.kill()  # a no-op when it already exited
    if failure is not None:
        if failure.kind == "poison":
            raise PoisonInputError(failure.reason)
        raise TransientJobError(failure.reason)
    if result is None or code != 0:
        raise TransientJobError(f"the job's process {_describe_exit(code)}")
    return result
