"""The gateway process's garbage collector: start-up frozen, full collections rarer.

A full (generation 2) collection walks every container object the process holds. In a
gateway with 1,000 chat sockets that paused the event loop 130-180 ms, about six times
a minute under the chat benchmark's load: the spikes in the fan-out's p99 (measured with
``gc.callbacks`` in the benchmark's gateways). Two changes, once the lifespan has run:

- ``gc.freeze()``: what start-up made (modules, the app, the broker, the engine) lives
  as long as the process; frozen, no collection walks it again. A full collection then
  took 50-90 ms: what is left is mostly the connections' own objects.
- full collections a tenth as often (``threshold2`` 10 → 100): young objects are still
  collected at the default pace (generations 0 and 1, ~0.1 and ~1 ms here); cyclic
  garbage that survives those waits longer.

Measured alone at 50 msg/s to 2,000 sockets: p99 76-79 → 71 ms; at 100 msg/s:
190 → 115 ms. Only for the process ``python -m gateway`` runs (``gateway.__main__``):
a test process creating many apps must not freeze what it holds.
"""

from __future__ import annotations

import gc
from typing import Final

# (generation 0, generation 1, generation 2): CPython's defaults are (700, 10, 10).
THRESHOLDS: Final = (700, 10, 100)


def tune_gc() -> None:
    """Collect once, freeze what is left, make full collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
