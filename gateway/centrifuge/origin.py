"""Which pages may open the chat WebSocket (Cross-Site WebSocket Hijacking).

Browsers send ``Origin`` on every WebSocket handshake and apply no same-origin policy
to WebSockets: without this check any site a viewer visits could open the chat as
that viewer. Allowed: the gateway's own ``public_url`` (when that is a loopback
address, also its other loopback spellings: a page at http://127.0.0.1:8080 is the same
gateway as http://localhost:8080) and each of ``settings.cors_origins``, compared
exactly after normalisation (scheme, host, port; no wildcards: ``https://example.*``
would also match attackers, NOTES.md). A handshake without ``Origin`` is not from a
browser page (the Python SDK, a native app) and is allowed: it cannot carry a
victim's ambient credentials, and the token travels inside the protocol anyway.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from common.settings import Settings
from gateway.security import allowed_origins as cors_origins
from gateway.security import normalize_origin

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def chat_origins(settings: Settings) -> frozenset[str]:
    own = normalize_origin(_origin_of(settings.public_url))
    return cors_origins(settings) | {own} | _loopback_aliases(own)


def _loopback_aliases(origin: str) -> set[str]:
    parts = urlsplit(origin)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    if host not in LOOPBACK_HOSTS:
        return set()
    port = f":{parts.port}" if parts.port else ""
    return {normalize_origin(f"{parts.scheme}://{alias}{port}") for alias in LOOPBACK_HOSTS}


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL that may carry a path."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host}"


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    if origin is None:
        return True
    try:
        return normalize_origin(origin) in allowed
    except ValueError:
        return False  # "null" (sandboxed iframes, file://) and anything malformed
