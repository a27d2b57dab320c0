"""The web client's router: pages, ``/static`` and the studio's read endpoint."""

from __future__ import annotations

from typing import Final

from litestar import Router
from litestar.di import Provide

from gateway.projections import provide_projections
from gateway.web.assets import static_router
from gateway.web.mine import my_videos
from gateway.web.pages import PAGES

web_router: Final = Router(
    "/",
    route_handlers=[*PAGES, my_videos, static_router],
    dependencies={"projections": Provide(provide_projections, sync_to_thread=False)},
    tags=["web"],
)
