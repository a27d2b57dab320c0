"""Error and disconnect codes of the Centrifugo client protocol, and our chat codes.

Reply errors (``{"id": N, "error": {"code", "message", "temporary"}}``) are the ones of
centrifugal/centrifuge ``errors.go``: 0-399 belong to the protocol, applications use
400-1999. Disconnect codes travel as the WebSocket close code with the reason as its
text (centrifuge ``disconnect.go``): 3000-3499 and 4000-4499 tell the SDK to reconnect,
3500-3999 and 4500-4999 are terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ReplyError:
    code: int
    message: str
    temporary: bool = False


@dataclass(frozen=True)
class Disconnect:
    code: int
    reason: str  # a WebSocket close reason must stay under 123 bytes (RFC 6455 §5.5)

    @property
    def reconnect(self) -> bool:
        """What the SDKs do with it (centrifuge ``Disconnect.isReconnect``)."""
        return self.code < 3500 or self.code >= 5000 or 4000 <= self.code < 4500


# --- reply errors (centrifuge errors.go) ----------------------------------------------
INTERNAL: Final = ReplyError(100, "internal server error", temporary=True)
UNAUTHORIZED: Final = ReplyError(101, "unauthorized")
UNKNOWN_CHANNEL: Final = ReplyError(102, "unknown channel")
PERMISSION_DENIED: Final = ReplyError(103, "permission denied")
METHOD_NOT_FOUND: Final = ReplyError(104, "method not found")
ALREADY_SUBSCRIBED: Final = ReplyError(105, "already subscribed")
LIMIT_EXCEEDED: Final = ReplyError(106, "limit exceeded")
BAD_REQUEST: Final = ReplyError(107, "bad request")
NOT_AVAILABLE: Final = ReplyError(108, "not available")
TOKEN_EXPIRED: Final = ReplyError(109, "token expired")
TOO_MANY_REQUESTS: Final = ReplyError(111, "too many requests", temporary=True)
UNRECOVERABLE_POSITION: Final = ReplyError(112, "unrecoverable position")

# --- disconnects (centrifuge disconnect.go) --------------------------------------------
SHUTDOWN: Final = Disconnect(3001, "shutdown")
SERVER_ERROR: Final = Disconnect(3004, "internal server error")
SLOW: Final = Disconnect(3008, "slow")
WRITE_ERROR: Final = Disconnect(3009, "write error")
NO_PONG: Final = Disconnect(3012, "no pong")
INVALID_TOKEN: Final = Disconnect(3500, "invalid token")
BAD_REQUEST_DISCONNECT: Final = Disconnect(3501, "bad request")
STALE: Final = Disconnect(3502, "stale")
NOT_AVAILABLE_DISCONNECT: Final = Disconnect(3508, "not available")
# RFC 6455 §7.4.1: "a message that is too big for it to process". The SDKs map it to
# their "message size limit" state.
MESSAGE_TOO_BIG: Final = Disconnect(1009, "message too big")

# --- chat decisions (application range 400-1999) ----------------------------------------
# ChatRejected.code → reply error code; the message is "<code>: <reason>" so the sender
# sees which rule refused it. Temporary ones may succeed if sent again later.
CHAT_ERROR_CODES: Final[dict[str, tuple[int, bool]]] = {
    "too_long": (400, False),
    "invalid_text": (401, False),
    "empty": (402, False),
    "rate_limited": (403, True),
    "slow_mode": (404, True),
    "banned": (405, False),
    "timed_out": (406, True),
    "banned_word": (407, False),
    "link_not_allowed": (408, False),
    "insufficient_funds": (409, False),
    "bad_amount": (410, False),
    "not_allowed": (411, False),
    "unknown_command": (412, False),
    "unknown_user": (413, False),
    "bad_command": (414, False),
    "unknown_channel": (415, False),
}
# The decision did not come back in time (chat component down or far behind).
DECISION_TIMEOUT: Final = ReplyError(499, "timeout: the message was not confirmed in time", True)


def chat_error(code: str, reason: str) -> ReplyError:
    number, temporary = CHAT_ERROR_CODES.get(code, (400, False))
    return ReplyError(number, f"{code}: {reason}" if reason else code, temporary)
