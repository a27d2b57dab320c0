"""Prometheus metrics and structured access logs, one middleware for both.

Multiprocess-safe: the gateway runs several worker processes that share nothing. When
``PROMETHEUS_MULTIPROC_DIR`` is set (before this module is imported: prometheus_client
reads it at import), every process writes its samples to mmap'd files in that folder
and ``/metrics`` aggregates them with ``MultiProcessCollector``; otherwise the
process's default registry is served. The supervisor empties the folder at start.

Labels use the route *template* (``/api/v2/streams/{stream_id}``), never the raw path:
one series per route, not per id (and no ids or tokens in label values).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Final

from litestar import Response, get
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from common.logs import get_logger

log = get_logger("gateway.access")

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED: Final = "<unmatched>"

REQUESTS = Counter(
    "videopick_http_requests_total",
    "HTTP requests answered by the gateway",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "videopick_http_request_duration_seconds",
    "Time from request start to the last response byte",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            candidate = value.decode("latin-1")
            # Echo a caller's id only if it is short and printable (it goes into logs).
            if 0 < len(candidate) <= 64 and candidate.isprintable():
                return candidate
    return uuid.uuid4().hex


class ObservabilityMiddleware:
    """Counts, times and logs each HTTP request; adds ``X-Request-ID`` to the response.

    The access line carries method, path (no query string: it may hold a token),
    route, status, duration, client and request id. No headers, no bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # if the app dies before answering, that is what the client sees

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders.from_message(message)["x-request-id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("path_template") or UNMATCHED
            method = scope["method"]
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(elapsed)
            client = scope.get("client")
            log.info(
                "request",
                method=method,
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                client=client[0] if client else None,
                request_id=request_id,
            )


def _registry() -> CollectorRegistry:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint() -> Response[bytes]:
    """Prometheus text exposition of every gateway process's metrics."""
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


def mark_process_dead() -> None:
    """Drop this process's live gauges from the shared folder (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
