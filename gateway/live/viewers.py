"""Concurrent viewers of live streams, counted where the playlists are served.

A viewer is a playback session: one client (its address and User-Agent, hashed — never
stored in the clear) polling a stream's playlist. LL-HLS players ask about every part,
plain HLS players every target duration, so a session not seen for ``window_s`` (15 s)
has left. Each gateway process counts its own viewers and publishes ``stats.viewers``
every few seconds; the stats projection sums the gateways (gateway/projections/stats.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar

from common.logs import get_logger

log = get_logger(__name__)

VIEWER_WINDOW_S = 15.0
REPORT_INTERVAL_S = 5.0

Report = Callable[[str, int], Awaitable[None]]


def viewer_key(address: str, user_agent: str) -> str:
    return hashlib.sha256(f"{address}\x00{user_agent}".encode()).hexdigest()[:16]


class ViewerTracker:
    """Distinct playback sessions per stream within a sliding window."""

    def __init__(self, window_s: float = VIEWER_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: dict[str, dict[str, float]] = {}

    def seen(self, stream_id: str, viewer: str, now: float | None = None) -> None:
        self._seen.setdefault(stream_id, {})[viewer] = time.monotonic() if now is None else now

    def counts(self, now: float | None = None) -> dict[str, int]:
        """Viewers per stream; a stream whose last viewer left reports 0 once, then drops."""
        now = time.monotonic() if now is None else now
        counts: dict[str, int] = {}
        for stream_id in list(self._seen):
            viewers = self._seen[stream_id]
            for viewer, last in list(viewers.items()):
                if now - last > self.window_s:
                    del viewers[viewer]
            counts[stream_id] = len(viewers)
            if not viewers:
                del self._seen[stream_id]
        return counts


async def report_forever(
    tracker: ViewerTracker, report: Report, interval_s: float = REPORT_INTERVAL_S
) -> None:
    """Publish every stream's count each interval; a failed publish waits for the next."""
    while True:
        await asyncio.sleep(interval_s)
        for stream_id, count in tracker.counts().items():
            try:
                await report(stream_id, count)
            except Exception as exc:  # the bus may be down; counts go out next time
                log.warning("viewer report failed", stream_id=stream_id, error=repr(exc))


@asynccontextmanager
async def viewers_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Reports the live service's viewer counts through the stats projection's reporter.

    Runs after ``projections_lifespan`` and ``live_lifespan`` (gateway/app.py).
    """
    from gateway.projections import provide_projections

    live = app.state.get("live")
    if live is None:
        raise RuntimeError("viewers_lifespan must run after live_lifespan")
    projections = provide_projections(app.state)
    task = asyncio.create_task(
        report_forever(live.viewers, projections.report_viewers), name="viewer-reports"
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
