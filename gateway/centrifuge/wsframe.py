"""Pre-encoded WebSocket frames, written straight to the connection's transport.

The fan-out builds one text frame per room per tick and hands the same bytes to every
socket (``transport.write``): no per-socket encoding, no ASGI ``send`` coroutine per
message. That is only safe where the server writes each of its own frames with one
``transport.write`` call from the event loop's thread, so ours never land inside one of
its frames: uvicorn's websockets-sansio protocol does (``transport.write(b"".join(…))``
everywhere). Anywhere else :func:`raw_transport` says no and the connection keeps the
ASGI path.

Server frames are never masked (RFC 6455 §5.1); RSV1 stays clear, so a frame is valid
with or without permessage-deflate negotiated (RFC 7692 §6: an uncompressed message).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import struct
from typing import Any, Final

# The server protocols known to write whole frames with one transport.write each.
_WHOLE_FRAME_WRITERS: Final = frozenset({"WebSocketsSansIOProtocol"})
_FIN_TEXT: Final = 0x81
_MAX_WRAPPERS: Final = 32


def text_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        header = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _FIN_TEXT, 127, size)
    return header + payload


def _server_protocol(send: Any) -> Any:
    """The server's protocol object whose bound ``send`` is behind ``send``.

    Middleware wraps ``send`` in closures (Litestar's exception handler does); the
    original is one of the functions they close over.
    """
    frontier = [send]
    for _ in range(_MAX_WRAPPERS):
        if not frontier:
            return None
        function = frontier.pop()
        protocol = getattr(function, "__self__", None)
        if type(protocol).__name__ in _WHOLE_FRAME_WRITERS:
            return protocol
        for cell in getattr(function, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell
                value = cell.cell_contents
                if inspect.isfunction(value) or inspect.ismethod(value):
                    frontier.append(value)
    return None


def raw_transport(send: Any) -> asyncio.Transport | None:
    """The socket's transport behind an ASGI ``send``, if frames may be written to it."""
    protocol = _server_protocol(send)
    if protocol is None:
        return None
    transport = getattr(protocol, "transport", None)
    if not isinstance(transport, asyncio.Transport) or transport.is_closing():
        return None
    return transport
