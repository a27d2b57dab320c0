"""Which pages may open the chat WebSocket (Cross-Site WebSocket Hijacking).

Browsers send ``Origin`` on every WebSocket handshake and apply no same-origin policy
to WebSockets: without this check any site a viewer visits could open the chat as
that viewer. Allowed: the gateway's own ``public_url`` and each of
``settings.cors_origins``, compared exactly after normalisation (scheme, host, port;
no wildcards: ``https://example.*`` would also match attackers, NOTES.md). A
handshake without ``Origin`` is not from a browser page (the Python SDK, a native
app) and is allowed: it cannot carry a victim's ambient credentials, and the token
travels inside the protocol anyway.
"""

from __future__ import annotations

from common.settings import Settings
from gateway.security import allowed_origins as cors_origins
from gateway.security import normalize_origin


def chat_origins(settings: Settings) -> frozenset[str]:
    return cors_origins(settings) | {normalize_origin(_origin_of(settings.public_url))}


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
