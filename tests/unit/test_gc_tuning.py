"""The gateway's collector tuning, in a fresh interpreter (freezing this one would keep
the test process's garbage forever)."""

from __future__ import annotations

import json
import subprocess
import sys

from gateway.gc_tuning import THRESHOLDS


def test_tune_gc_freezes_start_up_and_makes_full_collections_rarer() -> None:
    script = (
        "import gc, json\n"
        "from gateway.gc_tuning import tune_gc\n"
        "before = gc.get_freeze_count()\n"
        "tune_gc()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    before, after, thresholds = json.loads(out)
    assert before == 0
    assert after > 1000  # the interpreter's and the module's objects
    assert tuple(thresholds) == THRESHOLDS
    assert THRESHOLDS[2] > 10  # rarer than CPython's default
