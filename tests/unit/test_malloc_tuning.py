"""tune_malloc: a stream of 256 KiB bodies allocated and freed stops faulting pages in.

Each case runs in a fresh interpreter (the settings are process-wide and cannot be
undone) and counts the minor page faults of the allocations alone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.malloc_tuning import tune_malloc

pytestmark = pytest.mark.unit

_CHURN = """
import collections, os, resource, sys
from gateway.malloc_tuning import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
data = os.urandom(256 * 1024)
def churn():
    # What a body does: 256 KiB pieces of varying length, a few queued at a time.
    alive = collections.deque()
    for i in range(256):
        alive.append(data[: len(data) - i % 7])
        if len(alive) > 4:
            alive.popleft()
churn()  # the first pass grows the heap: not counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_bodies_fault_no_pages_in() -> None:
    assert tune_malloc()  # glibc here (Debian): the settings are taken
    untuned, tuned = _faults("default"), _faults("tuned")
    assert tuned < 50, (untuned, tuned)
    assert untuned > 4 * max(tuned, 10), (untuned, tuned)
