"""The gateway's read models, folded from the event log: the catalog and live stats.

Started once per process by a hook in ``gateway.app.LIFESPAN_HOOKS``, after the core
services (database, started broker, publisher) are up::

    LIFESPAN_HOOKS = [projections_lifespan]

which calls :func:`start_projections` / :func:`stop_projections` (usable directly by
anything that is not the app). Routes reach them as the ``projections`` dependency
(:func:`provide_projections`), which the routers in ``gateway.api.catalog`` and
``gateway.api.stats`` declare themselves.

Why not FastStream durable subscribers (``gateway.bus.SUBSCRIBERS``): the catalog
needs batches applied in log order with the position in the same transaction, and the
stats are a hot path read by every process (see ``catalog.py`` and ``stats.py``); both
read the log with raw nats-py (``_reader.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from litestar import Litestar
from litestar.datastructures import State
from nats.js import JetStreamContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from events.publisher import EventPublisher
from gateway.errors import UnavailableError
from gateway.projections._store import CHANNELS
from gateway.projections.catalog import CatalogProjector
from gateway.projections.stats import (
    MAX_LOOKBACK_S,
    StatsAggregator,
    StatsFeed,
    ViewerReporter,
)

__all__ = [
    "STATE_KEY",
    "Projections",
    "projections_lifespan",
    "provide_projections",
    "start_projections",
    "stats_start_time",
    "stop_projections",
]

STATE_KEY: Final = "projections"

log = get_logger(__name__)


@dataclass
class Projections:
    """What this process keeps of the log: handles the routes use."""

    sessions: async_sessionmaker[AsyncSession]
    publisher: EventPublisher
    catalog: CatalogProjector
    stats: StatsAggregator
    stats_feed: StatsFeed
    reporter: ViewerReporter

    async def report_viewers(self, stream_id: str, count: int) -> None:
        """Publish this gateway's viewer count of ``stream_id`` (call every few seconds)."""
        await self.reporter.report_viewers(stream_id, count)


async def stats_start_time(sessions: async_sessionmaker[AsyncSession]) -> dt.datetime:
    """Where the stats feed starts: the peak of every live session needs all of it.

    With the database down at start-up the gateway still starts (``/readyz`` reports
    the outage): the feed then reads the whole of ``STATS``' retention instead.
    """
    try:
        async with sessions() as session:
            oldest = await session.scalar(
                select(func.min(CHANNELS.c.started_at)).where(CHANNELS.c.live.is_(True))
            )
    except Exception as exc:
        log.warning("stats: no live sessions known, reading a day of stats", error=repr(exc))
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=MAX_LOOKBACK_S)
    if not isinstance(oldest, dt.datetime):
        return dt.datetime.now(dt.UTC)
    # Belt and braces: UtcDateTime makes it aware, but an aggregate's type is inferred.
    return oldest if oldest.tzinfo else oldest.replace(tzinfo=dt.UTC)


async def start_projections(
    state: State,
    *,
    js: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    gateway_id: str | None = None,
    stats: StatsAggregator | None = None,
) -> Projections:
    catalog = CatalogProjector(js, sessions)
    await catalog.start()
    aggregator = stats or StatsAggregator()
    feed = StatsFeed(js, aggregator)
    try:
        await feed.start(await stats_start_time(sessions))
    except BaseException:
        await catalog.stop()
        raise
    projections = Projections(
        sessions=sessions,
        publisher=publisher,
        catalog=catalog,
        stats=aggregator,
        stats_feed=feed,
        reporter=ViewerReporter(publisher, gateway_id),
    )
    state[STATE_KEY] = projections
    return projections


async def stop_projections(state: State) -> None:
    projections = state.get(STATE_KEY)
    if isinstance(projections, Projections):
        del state[STATE_KEY]
        await projections.stats_feed.stop()
        await projections.catalog.stop()


@asynccontextmanager
async def projections_lifespan(app: Litestar) -> AsyncIterator[None]:
    """The app's lifespan hook: needs ``app.state.services`` (gateway.services)."""
    from gateway.services import Services

    services = app.state.services
    if not isinstance(services, Services):  # pragma: no cover - app.py orders the hooks
        raise RuntimeError("projections_lifespan must run after core_services")
    await start_projections(
        app.state,
        js=services.broker.connection.jetstream(),
        sessions=services.sessions,
        publisher=services.publisher,
    )
    try:
        yield
    finally:
        await stop_projections(app.state)


def provide_projections(state: State) -> Projections:
    projections = state.get(STATE_KEY)
    if not isinstance(projections, Projections):
        raise UnavailableError("the gateway is starting or stopping")
    return projections
