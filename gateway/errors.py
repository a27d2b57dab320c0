"""Every error the gateway answers is ``application/problem+json`` (RFC 9457).

``{type, title, status, detail}`` plus, for validation errors, ``errors``: one entry
per bad field. Never a traceback, never a 5xx for bad input: anything unexpected is
logged here with its traceback and answered with a bare 500.

Errors::

    HTTPException (litestar)
     └── ApiError             a problem we raise on purpose (type slug, title, status)
          ├── UnauthorizedError     401, with WWW-Authenticate: Bearer
          ├── NotFoundError    404
          ├── ConflictError         409 (duplicate username / email)
          ├── TooManyRequestsError  429, with Retry-After
          └── UnavailableError      503 (NATS or the database is down)

Other exceptions mapped here: litestar's own HTTP exceptions (404, 405, 413, 400
validation), ``common.db.DatabaseUnavailable`` and ``events.publisher.PublishError``
(503: the request is fine, a dependency is not), and everything else (500).
"""

from __future__ import annotations

from typing import Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from common.db import DatabaseUnavailable
from common.logs import get_logger
from events.publisher import PublishError

log = get_logger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
# Problem types are relative URIs (RFC 9457 §3.1.1): stable identifiers clients can
# switch on; they need not resolve.
TYPE_PREFIX: Final = "/problems/"

# A clear title per status for the exceptions litestar raises itself.
_TITLES: Final[dict[int, tuple[str, str]]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "ConflictError"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class ApiError(HTTPException):
    """A problem the gateway raises on purpose."""

    status_code = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=self.status_code, headers=headers, extra=extra)


class UnauthorizedError(ApiError):
    status_code = HTTP_401_UNAUTHORIZED
    slug = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str) -> None:
        # RFC 6750 §3: tell the client which scheme, without echoing token details.
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="videopick"'})


class NotFoundError(ApiError):
    status_code = HTTP_404_NOT_FOUND
    slug = "not-found"
    title = "Not found"


class ConflictError(ApiError):
    status_code = HTTP_409_CONFLICT
    slug = "conflict"
    title = "ConflictError"


class TooManyRequestsError(ApiError):
    status_code = HTTP_429_TOO_MANY_REQUESTS
    slug = "too-many-requests"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(
            detail,
            headers={"Retry-After": str(max(1, retry_after_s))},
            extra={"retry_after_s": max(1, retry_after_s)},
        )


class UnavailableError(ApiError):
    status_code = HTTP_503_SERVICE_UNAVAILABLE
    slug = "unavailable"
    title = "Service unavailable"


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    default_slug, default_title = _TITLES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + (slug or default_slug),
        "title": title or default_title,
        "status": status,
        "detail": detail,
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: ValidationException) -> list[dict[str, str]]:
    """Litestar's per-field messages, reduced to what a client needs (no input echo)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    out: list[dict[str, str]] = []
    for item in extra:
        if isinstance(item, dict):
            entry = {"message": str(item.get("message", "invalid value"))}
            if item.get("key"):
                entry["field"] = str(item["key"])
            if item.get("source"):
                entry["in"] = str(item["source"])
            out.append(entry)
    return out


def _on_validation(_request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = _validation_errors(exc)
    if errors:
        parts = [f"{e['field']}: {e['message']}" if "field" in e else e["message"] for e in errors]
        detail = "; ".join(parts)
    else:
        # e.g. "Malformed JSON" or a body that is not an object.
        detail = exc.detail or "the request is malformed"
    return problem_response(
        400,
        detail,
        slug="validation",
        title="Invalid request",
        extra={"errors": errors} if errors else None,
    )


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ApiError):
        extra = exc.extra if isinstance(exc.extra, dict) else None
        return problem_response(
            exc.status_code,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            headers=exc.headers,
            extra=extra,
        )
    status = exc.status_code
    detail = exc.detail
    if status >= HTTP_500_INTERNAL_SERVER_ERROR:
        # Litestar's own 5xx (e.g. an ImproperlyConfigured) may carry internals.
        log.error("http exception", status=status, detail=detail)
        detail = "the server could not handle this request"
    elif status == 404 and detail == "Not Found":  # the router's own, say what
        detail = f"nothing at {request.url.path}"
    elif status == 405:
        allowed = (exc.headers or {}).get("allow", "?")
        detail = f"{request.method} is not allowed here; allowed: {allowed}"
    elif status == 413:
        detail = "the request body is larger than this endpoint accepts"
    fallback = _TITLES.get(status, ("", "Error"))[1]
    return problem_response(status, detail or fallback, headers=exc.headers)


def _on_database(_request: Request[Any, Any, Any], exc: DatabaseUnavailable) -> Response[Any]:
    log.warning("database unavailable", error=str(exc))
    return problem_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the database is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


def _on_publish(_request: Request[Any, Any, Any], exc: PublishError) -> Response[Any]:
    log.warning("event bus unavailable", error=str(exc))
    return problem_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the event bus is unavailable; nothing was changed, try again shortly",
        headers={"Retry-After": "5"},
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # The only place a traceback goes: the log, never the client.
    log.exception(
        "unhandled error",
        method=request.method,
        path=request.url.path,
        error_type=type(exc).__name__,
    )
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "the server could not handle this request"
    )


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ValidationException: _on_validation,
        HTTPException: _on_http,
        DatabaseUnavailable: _on_database,
        PublishError: _on_publish,
        Exception: _on_unexpected,
    }
