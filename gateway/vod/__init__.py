"""VOD delivery at the gateway: ``/vod/{video_id}/…`` from the object store.

Wiring (gateway/app.py)::

    from gateway.vod import routers as vod_routers, vod_lifespan
    ROUTE_HANDLERS += vod_routers
    LIFESPAN_HOOKS += [vod_lifespan]

``vod_lifespan`` opens the store named by the settings (``app.state.settings``) and
puts it in ``app.state["vod_store"]``; it needs nothing else from the app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.types import ControllerRouterHandler

from common.settings import Settings
from gateway.store import app_store
from gateway.vod.routes import VOD_STATE_KEY, vod_router

__all__ = ["VOD_STATE_KEY", "routers", "vod_lifespan", "vod_router"]

routers: list[ControllerRouterHandler] = [vod_router]


@asynccontextmanager
async def vod_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    if not isinstance(settings, Settings):
        raise RuntimeError("vod_lifespan needs app.state.settings")
    async with app_store(app, settings) as store:
        app.state[VOD_STATE_KEY] = store
        try:
            yield
        finally:
            app.state[VOD_STATE_KEY] = None
