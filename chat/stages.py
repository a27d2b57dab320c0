"""Where a chat message's time goes inside the chat worker (a benchmark aid).

Off unless ``VIDEOPICK_CHAT_STAGES=1`` (``Settings.chat_stages``): then each stage's
durations are collected and logged as p50/p99 every :data:`REPORT_EVERY_S` (``chat
stages`` lines in the worker's log), so a benchmark run shows which step dominates:

- ``transit``: the gateway made the event → this worker's batcher got it (JetStream,
  the consumer's fetch);
- ``queued``: waiting in the batcher for the batch before to commit;
- ``batch``: the batch's transaction (all its decisions and the commit);
- ``publish``: the outcome events to JetStream after the commit;
- ``size``: messages per batch.
"""

from __future__ import annotations

import time
from typing import Final

from common.logs import get_logger

log = get_logger(__name__)

REPORT_EVERY_S: Final = 5.0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Stages:
    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._values: dict[str, list[float]] = {}
        self._since = time.monotonic()

    def add(self, stage: str, value: float) -> None:
        if not self.enabled:
            return
        self._values.setdefault(stage, []).append(value)
        if time.monotonic() - self._since >= REPORT_EVERY_S:
            self.report()

    def report(self) -> None:
        summary = {
            f"{name}_p50_p99": f"{_pct(v, 0.5):.1f}/{_pct(v, 0.99):.1f}"
            for name, v in sorted(self._values.items())
            if v
        }
        if summary:
            log.info("chat stages", **summary)
        self._values.clear()
        self._since = time.monotonic()


# One per process: the worker turns it on from its settings (chat.worker).
STAGES: Final = Stages()
