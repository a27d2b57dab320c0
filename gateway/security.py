"""Browser-facing security: response headers (CSP without ``unsafe-inline``) and CORS.

CORS is ours rather than litestar's ``CORSConfig``: that one allows every origin by
default, turns ``*`` inside an origin into ``.*`` (``https://example.*`` matches
``https://example.evil``, NOTES.md) and sends some CORS headers to foreign origins
too. Here an origin is allowed only when it equals one of ``settings.cors_origins``
exactly; wildcards are refused at start-up. The API authenticates with bearer tokens,
never cookies, so ``Access-Control-Allow-Credentials`` is never sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, BeforeMessageSendHookHandler, Message, Receive, Scope, Send

from common.settings import Settings, SettingsError

# `default-src 'self'` and no 'unsafe-inline' anywhere: an injected <script> or
# style attribute does nothing (Owncast CVE-2021-39183 was stored XSS in chat).
# blob: for media/workers: hls.js plays through MediaSource blob URLs.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
    ]
)

SECURITY_HEADERS: Final[dict[str, str]] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Legacy twin of frame-ancestors for browsers without CSP level 2.
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
# RFC 6797: only meaningful (and only honoured) over HTTPS.
HSTS: Final = "max-age=31536000; includeSubDomains"

# What cross-origin clients may send and read. tus needs its headers both ways.
CORS_ALLOW_METHODS: Final = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
CORS_ALLOW_HEADERS: Final = frozenset(
    {
        "authorization",
        "content-type",
        "accept",
        "accept-language",
        "content-language",
        "x-request-id",
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-checksum",
        "upload-concat",
        "upload-defer-length",
        "x-http-method-override",
    }
)
CORS_EXPOSE_HEADERS: Final = ", ".join(
    [
        "Location",
        "Retry-After",
        "X-Request-ID",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Tus-Checksum-Algorithm",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Upload-Metadata",
    ]
)
CORS_MAX_AGE_S: Final = 600


def security_headers_hook(settings: Settings) -> BeforeMessageSendHookHandler:
    """A ``before_send`` hook adding the security headers to every HTTP response.

    A handler that sets its own value (e.g. a page with a stricter CSP) keeps it.
    """
    headers = dict(SECURITY_HEADERS)
    if settings.public_url.startswith("https://"):
        headers["strict-transport-security"] = HSTS

    async def add_security_headers(message: Message, _scope: Scope) -> None:
        if message["type"] != "http.response.start":
            return
        mutable = MutableScopeHeaders.from_message(message)
        for name, value in headers.items():
            if name not in mutable:
                mutable[name] = value

    return add_security_headers


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped; ValueError otherwise."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{origin!r} is not an http(s) origin")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} must be scheme://host[:port] only")
    if "*" in origin:
        raise ValueError(f"{origin!r}: wildcards are not allowed, list each origin")
    port = parts.port
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed_origins(settings: Settings) -> frozenset[str]:
    try:
        return frozenset(normalize_origin(origin) for origin in settings.cors_origins)
    except ValueError as exc:
        raise SettingsError(f"VIDEOPICK_CORS_ORIGINS: {exc}") from exc


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class CORSMiddleware:
    """Exact-match CORS. Foreign origins get no CORS header at all (only ``Vary``)."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    def _allowed(self, origin: str) -> bool:
        try:
            return normalize_origin(origin) in self.origins
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = self._allowed(origin)
        preflight = scope["method"] == "OPTIONS" and (
            _header(scope, b"access-control-request-method") is not None
        )
        if preflight:
            await self._preflight(scope, send, origin if allowed else None)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers.add("vary", "Origin")
                if allowed:
                    headers["access-control-allow-origin"] = origin
                    headers["access-control-expose-headers"] = CORS_EXPOSE_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, origin: str | None) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
        status = 204
        if origin is None:
            status = 403  # a browser stops here; nothing about our policy is disclosed
        else:
            requested = _header(scope, b"access-control-request-headers") or ""
            wanted = {h.strip().lower() for h in requested.split(",") if h.strip()}
            granted = sorted(wanted & CORS_ALLOW_HEADERS)
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-methods", CORS_ALLOW_METHODS.encode()),
                (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            ]
            if granted:
                headers.append((b"access-control-allow-headers", ", ".join(granted).encode()))
        headers.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
