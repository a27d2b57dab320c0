"""What ``gateway/app.py`` and ``gateway/bus.py`` plug in for uploads.

    gateway/app.py   ROUTE_HANDLERS += [tus_router, upload_api_router]
                     LIFESPAN_HOOKS += [uploads_lifespan]
    gateway/bus.py   SUBSCRIBERS += [upload_status_subscribers]
                     PUBLISHES += UPLOADS_PUBLISHES

``uploads_lifespan`` runs after the core services: it opens the object store and puts
the :class:`~gateway.tus.engine.UploadEngine` in ``app.state`` for the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from faststream.nats import NatsBroker
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from events.catalog import ChunkUploaded, UploadCreated, UploadRejected
from events.envelope import Event
from gateway.errors import UnavailableError
from gateway.services import Services
from gateway.store import app_store
from gateway.tus.engine import UploadEngine
from gateway.tus.routes import STATE_KEY, tus_router
from gateway.tus.simple import upload_api_router
from gateway.tus.status import register_status_subscribers

__all__ = [
    "UPLOADS_PUBLISHES",
    "tus_router",
    "upload_api_router",
    "upload_status_subscribers",
    "uploads_lifespan",
]

log = get_logger(__name__)

# The gateway publishes these for uploads (UploadRejected: code "cancelled", tus DELETE).
UPLOADS_PUBLISHES: Final[tuple[type[Event], ...]] = (UploadCreated, ChunkUploaded, UploadRejected)
# gateway/bus.py's CONTEXT_KEY: where the lifespan puts the Services for handlers.
_SERVICES_KEY: Final = "gateway"


@asynccontextmanager
async def uploads_lifespan(app: Litestar) -> AsyncIterator[None]:
    services = app.state.services
    if not isinstance(services, Services):
        raise RuntimeError("uploads_lifespan must run after the gateway's core services")
    async with app_store(app, services.settings) as store:
        engine = UploadEngine(
            settings=services.settings,
            sessions=services.sessions,
            store=store,
            publisher=services.publisher,
        )
        app.state[STATE_KEY] = engine
        log.info(
            "uploads ready",
            store=repr(store),
            max_size=services.settings.tus_max_size,
            chunk_size=services.settings.tus_chunk_size,
        )
        try:
            yield
        finally:
            app.state[STATE_KEY] = None
            # Answered chunks publish their event and free their lock before the bus
            # and the database close.
            await engine.drain()


def upload_status_subscribers(broker: NatsBroker) -> None:
    """A ``gateway.bus.SUBSCRIBERS`` registrar: the upload status projection."""

    def context() -> async_sessionmaker[AsyncSession]:
        services = broker.context.get(_SERVICES_KEY)
        if not isinstance(services, Services):
            raise UnavailableError("the gateway is starting or stopping")
        return services.sessions

    register_status_subscribers(broker, context)
