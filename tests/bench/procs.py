"""Which process listens on a port, from Linux's /proc (benchmarks measure its CPU)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def listening_pids(pids: list[int], port: int) -> set[int]:
    """Which of ``pids`` hold a listening TCP socket on ``port``."""
    inodes: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in inodes:
                        found.add(pid)
                        break
    return found


def listening_pid(port: int) -> int:
    """The one process listening on ``port`` (any of this machine's)."""
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    found = listening_pids(pids, port)
    if len(found) != 1:
        raise LookupError(f"{len(found)} processes listen on {port}: {sorted(found)}")
    return found.pop()
