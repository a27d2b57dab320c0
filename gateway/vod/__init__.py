"""VOD delivery at the gateway: ``/vod/{video_id}/…`` from the object store.

Wiring (gateway/app.py)::

    from gateway.vod import routers as vod_routers, vod_lifespan
    ROUTE_HANDLERS += vod_routers
    LIFESPAN_HOOKS += [vod_lifespan]

``vod_lifespan`` opens the store named by the settings (``app.state.settings``) and
puts it in ``app.state["vod_store"]``; with the core services up (``app.state.services``)
it also puts there the deleted-video check (:mod:`gateway.vod.gone`), which the live
routes use for recordings too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.types import ControllerRouterHandler

from common.settings import Settings
from gateway.services import Services
from gateway.store import app_store
from gateway.vod.gone import GONE_STATE_KEY, DeletedVideos
from gateway.vod.routes import VOD_STATE_KEY, vod_router

__all__ = [
    "GONE_STATE_KEY",
    "VOD_STATE_KEY",
    "DeletedVideos",
    "routers",
    "vod_lifespan",
    "vod_router",
]

routers: list[ControllerRouterHandler] = [vod_router]


@asynccontextmanager
async def vod_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    if not isinstance(settings, Settings):
        raise RuntimeError("vod_lifespan needs app.state.settings")
    services = app.state.get("services")
    async with app_store(app, settings) as store:
        app.state[VOD_STATE_KEY] = store
        if isinstance(services, Services):
            app.state[GONE_STATE_KEY] = DeletedVideos(services.sessions)
        try:
            yield
        finally:
            app.state[VOD_STATE_KEY] = None
            app.state[GONE_STATE_KEY] = None
