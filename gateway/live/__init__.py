"""LL-HLS delivery of live streams: ``/live/{stream_id}/index.m3u8`` and its media.

Wiring (``gateway/app.py``)::

    from gateway.live import live_lifespan, routers as live_routers
    ROUTE_HANDLERS += live_routers
    LIFESPAN_HOOKS.append(live_lifespan)

``live_lifespan`` puts a :class:`LiveService` on ``app.state.live``: the state built
from ``stream.*`` events (``state.py``), the bus feed that keeps it current
(``feed.py``), the object store the media is read from, and a small media cache. It
uses the gateway's shared store (``gateway.store``), or its own outside the app.

Modules: ``state`` (per-stream playlist windows), ``playlist`` (rendering), ``reload``
(blocking reload rules), ``feed`` (NATS subscription + catch-up), ``routes``,
``service`` (the errors and the service object), ``cache``, ``keys``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router

from common.logs import get_logger
from common.settings import Settings, get_settings
from common.store import ObjectStore
from gateway.live.feed import LiveFeed
from gateway.live.routes import live_router
from gateway.live.service import LiveService
from gateway.live.state import LiveState
from gateway.store import app_store

log = get_logger(__name__)

routers: list[Router] = [live_router]


async def start_live(
    settings: Settings, store: ObjectStore, *, nats_url: str | None = None
) -> LiveService:
    """A started live service: subscribed and caught up (``stop_live`` undoes it)."""
    state = LiveState(window_s=settings.live_window_s)
    feed = LiveFeed(state, nats_url or settings.resolved_nats_url)
    await feed.start()
    log.info("live delivery ready", live_streams=len(state.live_sessions()))
    return LiveService(state, store, feed=feed)


async def stop_live(service: LiveService) -> None:
    if service.feed is not None:
        await service.feed.stop()


@asynccontextmanager
async def live_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.get("settings") or get_settings()
    async with app_store(app, settings) as store:
        service = await start_live(settings, store)
        app.state.live = service
        try:
            yield
        finally:
            app.state.live = None
            await stop_live(service)


__all__ = ["LiveService", "live_lifespan", "routers", "start_live", "stop_live"]
