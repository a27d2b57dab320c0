"""The gateway application: ``create_app(settings) -> Litestar``.

Extending (one line each, in the two lists below):

- a feature's routes: add its ``Router`` (or handlers) to :data:`ROUTE_HANDLERS`;
- a feature's start-up/shut-down work (a projection's consumer, a cache): add a
  lifespan hook to :data:`LIFESPAN_HOOKS` — ``(app) -> async context manager``. Hooks
  enter in order after the core services are up (``app.state.services`` is set: db
  sessions, broker, publisher), and exit in reverse before the core shuts down.

Handlers get two dependencies from here: ``services`` (:class:`~gateway.services.Services`)
and ``current_user`` (:class:`~gateway.auth.dependencies.CurrentUser`, 401 without a
valid bearer token).

Settings are checked when the app is built, so a weak JWT secret or a wildcard CORS
origin stops the process before it listens (``python -m gateway`` prints why).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.types import ControllerRouterHandler

from common.db import create_engine, session_factory
from common.logs import get_logger
from common.settings import Settings, get_settings
from events.publisher import EventPublisher
from gateway import bus
from gateway.api.catalog import catalog_router
from gateway.api.stats import stats_router
from gateway.api.wallet import wallet_router
from gateway.auth.dependencies import provide_current_user
from gateway.auth.keys import load_key_set
from gateway.auth.limiter import RateLimiter
from gateway.auth.routes import auth_router
from gateway.auth.tokens import TokenService
from gateway.centrifuge import centrifugo_websocket
from gateway.centrifuge.wiring import chat_lifespan
from gateway.channels.keys import KeyBox
from gateway.channels.routes import channels_router
from gateway.docs import openapi_config
from gateway.errors import exception_handlers
from gateway.health import healthz, readyz
from gateway.live import live_lifespan
from gateway.live import routers as live_routers
from gateway.live.viewers import viewers_lifespan
from gateway.metrics import ObservabilityMiddleware, mark_process_dead, metrics_endpoint
from gateway.ops_metrics import ops_metrics_lifespan
from gateway.projections import projections_lifespan
from gateway.security import CORSMiddleware, allowed_origins, security_headers_hook
from gateway.services import Services, provide_services
from gateway.store import store_lifespan
from gateway.tus.wiring import tus_router, upload_api_router, uploads_lifespan
from gateway.vod import routers as vod_routers
from gateway.vod import vod_lifespan
from gateway.web import web_router

log = get_logger(__name__)

LifespanHook = Callable[[Litestar], AbstractAsyncContextManager[None]]

ROUTE_HANDLERS: list[ControllerRouterHandler] = [
    healthz,
    readyz,
    metrics_endpoint,
    auth_router,
    channels_router,
    catalog_router,
    stats_router,
    *live_routers,
    *vod_routers,
    tus_router,
    upload_api_router,
    centrifugo_websocket,
    wallet_router,
    web_router,
]

LIFESPAN_HOOKS: list[LifespanHook] = [
    store_lifespan,
    projections_lifespan,
    live_lifespan,
    viewers_lifespan,
    vod_lifespan,
    uploads_lifespan,
    chat_lifespan,
    ops_metrics_lifespan,
]


@asynccontextmanager
async def core_services(app: Litestar) -> AsyncIterator[None]:
    """Database engine, the started broker, the publisher: ``app.state.services``."""
    settings: Settings = app.state.settings
    engine = create_engine(settings.resolved_database_url, application_name="videopick-gateway")
    sessions = session_factory(engine)
    # FastStream has no Litestar plugin (NOTES.md): the broker lives in this lifespan.
    broker = bus.create_broker(settings)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        broker=broker,
        publisher=EventPublisher(broker, producer=bus.COMPONENT),
        tokens=app.state.tokens,
        key_box=app.state.key_box,
        login_limiter=RateLimiter(
            sessions, limit=settings.login_limit_attempts, window_s=settings.login_limit_window_s
        ),
    )
    try:
        broker.context.set_global(bus.CONTEXT_KEY, services)
        await broker.start()
        app.state.services = services
        log.info(
            "gateway ready", nats=settings.resolved_nats_url, kid=services.tokens.keys.active.kid
        )
        yield
    finally:
        app.state.services = None
        await broker.stop()
        await engine.dispose()
        mark_process_dead()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    # Everything that can refuse the configuration runs here, before any I/O.
    tokens = TokenService(settings, load_key_set(settings))
    key_box = KeyBox(settings)
    origins = allowed_origins(settings)

    app = Litestar(
        route_handlers=ROUTE_HANDLERS,
        lifespan=[core_services, *LIFESPAN_HOOKS],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "current_user": Provide(provide_current_user),
        },
        exception_handlers=exception_handlers(),
        before_send=[security_headers_hook(settings)],
        openapi_config=openapi_config(),
        request_max_body_size=settings.http_max_body_bytes,
        # Our structlog setup (common.logs) stays in charge; errors are logged by
        # gateway.errors, requests by gateway.metrics.
        logging_config=None,
        state=State({"settings": settings, "tokens": tokens, "key_box": key_box, "services": None}),
        debug=False,
    )
    # Outermost, around litestar's router (as litestar itself mounts its CORS): so 404s
    # are counted and logged too, and a preflight to any path gets a CORS answer.
    app.asgi_handler = ObservabilityMiddleware(CORSMiddleware(app.asgi_handler, origins))
    return app
