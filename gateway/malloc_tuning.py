"""glibc malloc settings for the gateway process: request bodies without page faults.

An upload's body arrives as a stream of 256 KiB reads: asyncio's ``recv`` allocates
a fresh bytes object for each, llhttp hands the body over as another, and both are
freed a moment later. With glibc's defaults the heap's top is given back to the
kernel as soon as 512 KiB of it are free (the dynamic trim threshold, twice the
mmap threshold) and grown again by the next read, so each 8 MiB tus PATCH took
~200 minor page faults and ~1.5 ms more of event-loop CPU (~6.5 instead of ~5 ms
with a bare uvicorn, counted with ``getrusage``). Here blocks under 4 MiB come from
the heap and up to 32 MiB of free heap is kept for the next body: that covers the
1 MiB reads of a body taken from the socket (``gateway/http_socket_body.py``), which,
mmapped one by one, cost their reader thread ~1.5 ms of page faults per MiB (py-spy:
a third of a core during the tus benchmark).

Only where the C library has ``mallopt`` (glibc); elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

MMAP_THRESHOLD: Final = 4 * 1024 * 1024
TRIM_THRESHOLD: Final = 32 * 1024 * 1024
# <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


def tune_malloc() -> bool:
    """Apply the thresholds above; True if the C library took both."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either turns glibc's dynamic thresholds off, so both are set.
    mmap_ok = int(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1
    trim_ok = int(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) == 1
    return mmap_ok and trim_ok
