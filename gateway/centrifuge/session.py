"""One client connection's protocol state machine, sans I/O (h11's shape).

The WebSocket loop feeds every received frame to :meth:`Session.receive` and carries
out the actions it returns, in order: :class:`Write` bytes to the client,
:class:`Close` the connection, or do the I/O a command needs (:class:`Authenticate`,
:class:`Subscribe`, :class:`Publish`…) and hand the outcome back
(:meth:`Session.connected`, :meth:`Session.subscribed`, :meth:`Session.error`…), which
returns the reply to send. :meth:`Session.tick` runs the server pings.

States (every transition is in :data:`TRANSITIONS` and goes through ``_set_state``)::

    OPEN ──connect──▶ AUTHENTICATING ──token ok──▶ CONNECTED
      │                   │  └──token refused──▶ REFUSED (the SDK reconnects)
      └───────────────────┴──────────────────────────────▶ CLOSED

Protocol rules enforced here (centrifuge ``client.go``, ``dispatchCommand``):

- before a successful connect, any other command → disconnect 3501 "bad request"
  (commands batched after the connect in the same frame wait for it); a second
  connect → 3501;
- a command with no id, other than the pong ``{}``, → 3501; a pong with no ping
  outstanding → 3501; a command naming no known method → 3501;
- an empty channel in subscribe/unsubscribe/publish/history/presence → 3501;
  publish without data → 3501;
- a channel that is not ``chat:<stream_id>`` → error 102; subscribing twice → 105;
  publishing anonymously → 103; presence (the member list) and rpc/send/refresh →
  108 "not available"; a publish whose data is not ``{"text": str[, "amount": int]}``
  → 107; text longer than the limit → 400 "too_long".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

import msgspec

from common.logs import get_logger
from gateway.centrifuge import codes
from gateway.centrifuge.channels import parse_channel
from gateway.centrifuge.codes import Disconnect, ReplyError
from gateway.centrifuge.protocol import (
    PING,
    Command,
    ProtocolError,
    StreamPosition,
    encode_error,
    encode_reply,
    method_of,
    parse_frame,
)

log = get_logger(__name__)

SERVER_VERSION: Final = "videopick"
MAX_SUBSCRIPTIONS: Final = 16
MAX_PUBLISHES_IN_FLIGHT: Final = 8
HISTORY_MAX_LIMIT: Final = 100
# A socket that has not sent a valid connect by then is closed "stale" (Centrifugo's
# client_stale_close_delay is 10 s).
CONNECT_TIMEOUT_S: Final = 10.0


class SessionState(enum.Enum):
    OPEN = "open"
    AUTHENTICATING = "authenticating"
    CONNECTED = "connected"
    REFUSED = "refused"
    CLOSED = "closed"


TRANSITIONS: Final[dict[SessionState, frozenset[SessionState]]] = {
    SessionState.OPEN: frozenset({SessionState.AUTHENTICATING, SessionState.CLOSED}),
    SessionState.AUTHENTICATING: frozenset(
        {SessionState.CONNECTED, SessionState.REFUSED, SessionState.CLOSED}
    ),
    SessionState.CONNECTED: frozenset({SessionState.CLOSED}),
    SessionState.REFUSED: frozenset({SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


# --- actions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Write:
    """Bytes for the client (a reply, an error, a ping)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    disconnect: Disconnect


@dataclass(frozen=True, slots=True)
class Authenticate:
    command_id: int
    token: str  # "" → anonymous (read only)
    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    command_id: int
    channel: str
    stream_id: str
    # Set when the client asks to recover from a position it had (reconnect).
    since: StreamPosition | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class Publish:
    command_id: int
    channel: str
    stream_id: str
    text: str
    amount: int


@dataclass(frozen=True, slots=True)
class History:
    command_id: int
    channel: str
    stream_id: str
    limit: int
    since: StreamPosition | None
    reverse: bool


@dataclass(frozen=True, slots=True)
class PresenceStats:
    command_id: int
    channel: str
    stream_id: str


Action = Write | Close | Authenticate | Subscribe | Unsubscribe | Publish | History | PresenceStats


class PublishData(msgspec.Struct, forbid_unknown_fields=True):
    """What a chat client publishes: ``{"text": …}``, a super chat adds ``"amount"``."""

    text: str
    amount: int = 0


_publish_decoder: Final = msgspec.json.Decoder(PublishData)


# --- results the I/O side hands back ----------------------------------------------


class SubscribeResult(msgspec.Struct, omit_defaults=True):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    publications: list[msgspec.Raw] = []
    recovered: bool = False
    was_recovering: bool = False
    positioned: bool = False


class HistoryResult(msgspec.Struct, omit_defaults=True):
    publications: list[msgspec.Raw] = []
    epoch: str = ""
    offset: int = 0


class PresenceStatsResult(msgspec.Struct):
    num_clients: int
    num_users: int


@dataclass(frozen=True)
class Identity:
    """Who is on the other end: a user, or an anonymous (read-only) viewer."""

    user_id: str = ""
    name: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.user_id


@dataclass
class SessionConfig:
    max_chars: int = 500
    ping_interval_s: float = 25.0
    pong_timeout_s: float = 8.0
    connect_timeout_s: float = CONNECT_TIMEOUT_S


@dataclass
class Session:
    client_id: str
    config: SessionConfig = field(default_factory=SessionConfig)
    opened_at: float = 0.0
    state: SessionState = SessionState.OPEN
    identity: Identity = field(default_factory=Identity)
    # Channels subscribed (or being subscribed: the I/O is in flight).
    channels: set[str] = field(default_factory=set)
    publishes_in_flight: int = 0
    # Commands that followed a connect in the same frame: they run once the token is
    # checked (centrifuge-js sends connect and its subscribes in one batch).
    _deferred: list[Command] = field(default_factory=list)
    _ping_sent_at: float | None = None
    _next_ping_at: float = 0.0

    # --- state ----------------------------------------------------------------------

    def _set_state(self, new: SessionState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise RuntimeError(f"session {self.client_id}: {self.state.value} → {new.value}")
        log.debug("session state", client=self.client_id, old=self.state.value, new=new.value)
        self.state = new

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    def close(self) -> None:
        if self.state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)

    def _close(self, disconnect: Disconnect, why: str) -> list[Action]:
        log.info("closing client", client=self.client_id, code=disconnect.code, why=why[:200])
        self.close()
        return [Close(disconnect)]

    # --- input ----------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Action]:
        """Parse one frame and return what to do about each of its commands, in order."""
        if self.state is SessionState.CLOSED:
            return []
        try:
            commands = parse_frame(frame)
        except ProtocolError as exc:
            return self._close(codes.BAD_REQUEST_DISCONNECT, str(exc))
        return self._run(commands)

    def _run(self, commands: list[Command]) -> list[Action]:
        actions: list[Action] = []
        for index, command in enumerate(commands):
            if self.state is SessionState.AUTHENTICATING:
                self._deferred.extend(commands[index:])
                break
            actions.extend(self._command(command))
            if self.closed:
                break
        return actions

    def _command(self, command: Command) -> list[Action]:  # noqa: PLR0911 - one per rule
        method = method_of(command)
        if method is None and command.id == 0:
            return self._pong()
        if command.id == 0 and method == "send":
            # An async message needs a server-side handler; there is none (centrifuge
            # answers DisconnectNotAvailable).
            return self._close(codes.NOT_AVAILABLE_DISCONNECT, "send is not available")
        if command.id == 0:
            return self._close(codes.BAD_REQUEST_DISCONNECT, f"{method} without an id")
        if method is None:
            return self._close(codes.BAD_REQUEST_DISCONNECT, "command names no known method")
        if method == "connect":
            return self._connect(command)
        if self.state is not SessionState.CONNECTED:
            return self._close(codes.BAD_REQUEST_DISCONNECT, f"{method} before connect")
        handler = _HANDLERS[method]
        return handler(self, command)

    def _pong(self) -> list[Action]:
        if self._ping_sent_at is None:
            return self._close(codes.BAD_REQUEST_DISCONNECT, "pong without a ping")
        self._ping_sent_at = None
        return []

    def _connect(self, command: Command) -> list[Action]:
        if self.state is not SessionState.OPEN:
            return self._close(codes.BAD_REQUEST_DISCONNECT, "client already authenticated")
        request = command.connect
        assert request is not None
        self._set_state(SessionState.AUTHENTICATING)
        return [Authenticate(command.id, request.token, request.name, request.version)]

    def _channel(self, command_id: int, channel: str) -> tuple[str | None, list[Action]]:
        """The channel's stream id, or the actions that refuse it."""
        if not channel:
            return None, self._close(codes.BAD_REQUEST_DISCONNECT, "channel required")
        stream_id = parse_channel(channel)
        if stream_id is None:
            return None, [Write(encode_error(command_id, codes.UNKNOWN_CHANNEL))]
        return stream_id, []

    def _subscribe(self, command: Command) -> list[Action]:
        request = command.subscribe
        assert request is not None
        stream_id, refused = self._channel(command.id, request.channel)
        if stream_id is None:
            return refused
        if request.channel in self.channels:
            return [Write(encode_error(command.id, codes.ALREADY_SUBSCRIBED))]
        if len(self.channels) >= MAX_SUBSCRIPTIONS:
            return [Write(encode_error(command.id, codes.LIMIT_EXCEEDED))]
        self.channels.add(request.channel)
        since = (
            StreamPosition(offset=request.offset, epoch=request.epoch) if request.recover else None
        )
        return [Subscribe(command.id, request.channel, stream_id, since)]

    def _unsubscribe(self, command: Command) -> list[Action]:
        request = command.unsubscribe
        assert request is not None
        if not request.channel:
            return self._close(codes.BAD_REQUEST_DISCONNECT, "channel required")
        actions: list[Action] = []
        stream_id = parse_channel(request.channel)
        if request.channel in self.channels and stream_id is not None:
            self.channels.discard(request.channel)
            actions.append(Unsubscribe(request.channel, stream_id))
        # Unsubscribing from a channel one is not in succeeds (centrifuge does the same).
        actions.append(Write(encode_reply(command.id, "unsubscribe", {})))
        return actions

    def _publish(self, command: Command) -> list[Action]:  # noqa: PLR0911 - one per rule
        request = command.publish
        assert request is not None
        data = bytes(request.data)
        if not request.channel or not data or data == b"null":
            return self._close(codes.BAD_REQUEST_DISCONNECT, "channel and data required")
        stream_id, refused = self._channel(command.id, request.channel)
        if stream_id is None:
            return refused
        if self.identity.anonymous:
            return [Write(encode_error(command.id, codes.PERMISSION_DENIED))]
        try:
            payload = _publish_decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError is a subclass
            return [Write(encode_error(command.id, codes.BAD_REQUEST))]
        if payload.amount < 0:
            return [Write(encode_error(command.id, codes.BAD_REQUEST))]
        if len(payload.text) > self.config.max_chars:
            # Refused here, before it costs an event; the chat component checks again.
            error = codes.chat_error(
                "too_long", f"{len(payload.text)} characters, at most {self.config.max_chars}"
            )
            return [Write(encode_error(command.id, error))]
        if self.publishes_in_flight >= MAX_PUBLISHES_IN_FLIGHT:
            return [Write(encode_error(command.id, codes.TOO_MANY_REQUESTS))]
        self.publishes_in_flight += 1
        return [Publish(command.id, request.channel, stream_id, payload.text, payload.amount)]

    def _history(self, command: Command) -> list[Action]:
        request = command.history
        assert request is not None
        stream_id, refused = self._channel(command.id, request.channel)
        if stream_id is None:
            return refused
        limit = request.limit
        if limit < 0 or limit > HISTORY_MAX_LIMIT:
            limit = HISTORY_MAX_LIMIT  # centrifuge caps to history_max_publication_limit
        return [
            History(command.id, request.channel, stream_id, limit, request.since, request.reverse)
        ]

    def _presence_stats(self, command: Command) -> list[Action]:
        request = command.presence_stats
        assert request is not None
        stream_id, refused = self._channel(command.id, request.channel)
        if stream_id is None:
            return refused
        return [PresenceStats(command.id, request.channel, stream_id)]

    def _presence(self, command: Command) -> list[Action]:
        request = command.presence
        assert request is not None
        if not request.channel:
            return self._close(codes.BAD_REQUEST_DISCONNECT, "channel required")
        # Who is watching is not disclosed; presence_stats gives the counts.
        return [Write(encode_error(command.id, codes.NOT_AVAILABLE))]

    def _ping(self, command: Command) -> list[Action]:
        return [Write(encode_reply(command.id, "ping", {}))]

    def _not_available(self, command: Command) -> list[Action]:
        return [Write(encode_error(command.id, codes.NOT_AVAILABLE))]

    # --- outcomes from the I/O side ----------------------------------------------------

    def connected(self, command_id: int, identity: Identity, now: float) -> list[Action]:
        if self.state is not SessionState.AUTHENTICATING:
            return []
        self.identity = identity
        self._set_state(SessionState.CONNECTED)
        self._next_ping_at = now + self.config.ping_interval_s
        result = {
            "client": self.client_id,
            "version": SERVER_VERSION,
            "ping": int(self.config.ping_interval_s),
            "pong": True,
        }
        deferred, self._deferred = self._deferred, []
        return [Write(encode_reply(command_id, "connect", result)), *self._run(deferred)]

    def connect_refused(self, command_id: int, refusal: ReplyError | Disconnect) -> list[Action]:
        if self.state is not SessionState.AUTHENTICATING:
            return []
        self._deferred = []
        if isinstance(refusal, Disconnect):
            return self._close(refusal, "connect refused")
        # An error reply (e.g. 109 token expired): the SDK gets a new token and
        # reconnects; this connection takes no more commands.
        self._set_state(SessionState.REFUSED)
        return [Write(encode_error(command_id, refusal))]

    def subscribed(self, command_id: int, result: SubscribeResult) -> bytes:
        return encode_reply(command_id, "subscribe", result)

    def subscribe_failed(self, command_id: int, channel: str, error: ReplyError) -> bytes:
        self.channels.discard(channel)
        return encode_error(command_id, error)

    def published(self, command_id: int, error: ReplyError | None) -> bytes:
        self.publishes_in_flight = max(0, self.publishes_in_flight - 1)
        if error is not None:
            return encode_error(command_id, error)
        return encode_reply(command_id, "publish", {})

    def history(self, command_id: int, result: HistoryResult) -> bytes:
        return encode_reply(command_id, "history", result)

    def presence_stats(self, command_id: int, result: PresenceStatsResult) -> bytes:
        return encode_reply(command_id, "presence_stats", result)

    def error(self, command_id: int, error: ReplyError) -> bytes:
        return encode_error(command_id, error)

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:  # noqa: PLR0911 - one per timer
        """Server pings and timeouts; call at least every second or so."""
        if self.state in (SessionState.OPEN, SessionState.AUTHENTICATING, SessionState.REFUSED):
            if now - self.opened_at > self.config.connect_timeout_s:
                return self._close(codes.STALE, "no connect in time")
            return []
        if self.state is not SessionState.CONNECTED:
            return []
        if self._ping_sent_at is not None:
            if now - self._ping_sent_at > self.config.pong_timeout_s:
                return self._close(codes.NO_PONG, "no pong in time")
            return []
        if now >= self._next_ping_at:
            self._ping_sent_at = now
            self._next_ping_at = now + self.config.ping_interval_s
            return [Write(PING)]
        return []


_HANDLERS: Final = {
    "subscribe": Session._subscribe,
    "unsubscribe": Session._unsubscribe,
    "publish": Session._publish,
    "history": Session._history,
    "presence_stats": Session._presence_stats,
    "presence": Session._presence,
    "ping": Session._ping,
    "send": Session._not_available,
    "rpc": Session._not_available,
    "refresh": Session._not_available,
    "sub_refresh": Session._not_available,
}
