"""``/healthz`` (the process answers) and ``/readyz`` (it can do useful work).

Readiness checks what every write needs: the NATS connection (events) and a database
round trip. Each check has its own short deadline so a hung dependency gives a quick
503 with details, which is what a load balancer needs to stop sending traffic here.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from common.db import DatabaseUnavailable, ping
from gateway.errors import problem_response

NATS_FLUSH_TIMEOUT_S: Final = 1.0


@get("/healthz", include_in_schema=True, tags=["operations"], sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process is up and its event loop answers."""
    return {"status": "ok"}


async def _check_nats(state: State) -> str | None:
    """None when connected and the server answers a PING; the reason otherwise."""
    services = state.get("services")
    if services is None:
        return "not started"
    connection = services.broker._connection  # FastStream keeps the nats-py client here
    if connection is None or not connection.is_connected:
        return "not connected"
    try:
        await connection.flush(timeout=NATS_FLUSH_TIMEOUT_S)
    except Exception as exc:  # any failure means "not ready"; say which
        return f"no answer: {type(exc).__name__}"
    return None


async def _check_database(state: State) -> str | None:
    services = state.get("services")
    if services is None:
        return "not started"
    try:
        await ping(services.engine)
    except DatabaseUnavailable as exc:
        return str(exc)
    return None


@get("/readyz", tags=["operations"])
async def readyz(request: Request[Any, Any, Any]) -> Response[Any]:
    """Readiness: NATS connected and the database answering. 503 lists what failed."""
    nats_error, db_error = await asyncio.gather(
        _check_nats(request.app.state), _check_database(request.app.state)
    )
    checks = {"nats": nats_error or "ok", "database": db_error or "ok"}
    if nats_error is None and db_error is None:
        return Response({"status": "ready", "checks": checks}, status_code=HTTP_200_OK)
    failing = ", ".join(name for name, value in checks.items() if value != "ok")
    return problem_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        f"not ready: {failing}",
        slug="not-ready",
        title="Not ready",
        extra={"checks": checks},
    )
