"""The process one job runs in: ``python -m transcoder.child`` (started by the worker).

Why a process per job: decoding untrusted media is where FFmpeg's CVEs live, a huge
or hostile input can eat memory or hang, and x264 needs the cores. In a child the
worker's event loop stays responsive (heartbeats, progress), and a stuck job is
killed without touching the worker. The child dies with its parent
(``PR_SET_PDEATHSIG``): a killed worker leaves no orphan encoding on.

Reads one :class:`~transcoder.protocol.JobSpec` from stdin; writes
:class:`~transcoder.protocol.Progress` lines, then a ``Result`` or a ``Failure``, to
stdout. Exit status: 0 done, 2 poison input, 3 transient failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
from typing import BinaryIO, Final

from common.logs import configure_logging, get_logger
from transcoder.errors import PoisonInputError
from transcoder.protocol import ChildMessage, Failure, decode_spec, encode

EXIT_POISON: Final = 2
EXIT_TRANSIENT: Final = 3
_PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>

log = get_logger("transcoder.child")


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_TRANSIENT)


def _limit_memory(megabytes: int) -> None:
    """Cap the address space: a decompression bomb fails with MemoryError, not the host."""
    if megabytes > 0:
        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class _Channel:
    """The message pipe: the original stdout. fd 1 itself is pointed at stderr, so
    stray prints (ours or a C library's) can never corrupt the protocol."""

    def __init__(self) -> None:
        self._out: BinaryIO = os.fdopen(os.dup(1), "wb", buffering=0)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, message: ChildMessage) -> None:
        self._out.write(encode(message) + b"\n")


def main() -> int:
    parent = int(os.environ.get("TRANSCODER_PARENT_PID", os.getppid()))
    _die_with_parent(parent)
    channel = _Channel()
    spec = decode_spec(sys.stdin.buffer.read())
    settings = spec.settings
    configure_logging("transcoder-child", settings.log_level, settings.log_json)
    _limit_memory(settings.transcode_memory_limit_mb)
    try:
        from transcoder.job import run_job  # PyAV loads after the limits are in place

        result = run_job(spec, channel.send)
    except PoisonInputError as exc:
        channel.send(Failure(kind="poison", reason=str(exc)))
        return EXIT_POISON
    except MemoryError:
        channel.send(Failure(kind="transient", reason="out of memory"))
        return EXIT_TRANSIENT
    except Exception as exc:
        log.exception("job failed", video_id=spec.video_id)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        channel.send(Failure(kind="transient", reason=reason))
        return EXIT_TRANSIENT
    channel.send(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
