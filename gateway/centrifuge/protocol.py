"""Wire format of the Centrifugo client protocol v2, JSON flavour: parse and serialize.

Source of truth: ``definitions/client.proto`` (centrifugal/protocol) and what the SDKs
send (centrifuge-js ``JsonCodec``, centrifuge-python ``_JsonCodec``):

- A **frame** (one WebSocket text message) carries one or more JSON messages separated
  by ``\\n``; blank lines are skipped (centrifuge-js skips them too).
- A **Command** has an ``id`` (uint32) and exactly one request field (``connect``,
  ``subscribe``, ``unsubscribe``, ``publish``, ``presence``, ``presence_stats``,
  ``history``, ``ping``, ``send``, ``rpc``, ``refresh``, ``sub_refresh``). An empty
  object ``{}`` is the client's **pong** to a server ping.
- A **Reply** echoes the ``id`` with either ``error`` or the result under the same
  field name; a **push** is a reply with no id and a ``push`` field; the server's
  **ping** is an empty reply ``{}``.
- ``bytes`` fields of the proto (``data``) are embedded JSON in the JSON protocol.

Nothing here does I/O. :func:`parse_frame` raises :class:`ProtocolError` with a
precise message for anything that is not a well-formed command; encoders return
``bytes`` ready to join into a frame.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from gateway.centrifuge.codes import ReplyError

__all__ = [
    "MAX_COMMANDS_PER_FRAME",
    "PING",
    "Command",
    "ConnectRequest",
    "HistoryRequest",
    "ProtocolError",
    "PublishRequest",
    "StreamPosition",
    "SubscribeRequest",
    "encode_error",
    "encode_publication",
    "encode_push_pub",
    "encode_reply",
    "method_of",
    "parse_frame",
]

UINT32_MAX: Final = 2**32 - 1
# A frame with more commands than this is an abuse, not a client: the SDKs batch a
# handful (connect + subscribes) at most.
MAX_COMMANDS_PER_FRAME: Final = 256
# Server ping / client pong: the empty message (client protocol, "Ping-pong").
PING: Final = b"{}"


class ProtocolError(ValueError):
    """The client sent something that is not a valid command (→ disconnect 3501)."""


class _Request(msgspec.Struct, omit_defaults=True):
    pass


class StreamPosition(_Request):
    offset: int = 0
    epoch: str = ""


class SubscribeRequest(_Request):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    flag: int = 0


class ConnectRequest(_Request):
    token: str = ""
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    subs: dict[str, SubscribeRequest] = {}
    name: str = ""
    version: str = ""
    headers: dict[str, str] = {}
    flag: int = 0


class ChannelRequest(_Request):
    """unsubscribe, presence, presence_stats, sub_refresh: a channel (and a token)."""

    channel: str = ""
    token: str = ""


class PublishRequest(_Request):
    channel: str = ""
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class HistoryRequest(_Request):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class Empty(_Request):
    pass


class DataRequest(_Request):
    """send, rpc, refresh: parsed only to be refused (not available here)."""

    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    method: str = ""
    token: str = ""


class Command(msgspec.Struct, omit_defaults=True):
    id: int = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: ChannelRequest | None = None
    publish: PublishRequest | None = None
    presence: ChannelRequest | None = None
    presence_stats: ChannelRequest | None = None
    history: HistoryRequest | None = None
    ping: Empty | None = None
    send: DataRequest | None = None
    rpc: DataRequest | None = None
    refresh: DataRequest | None = None
    sub_refresh: ChannelRequest | None = None


# The request fields in the proto's order; the first one present is the method.
METHODS: Final = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)

_decoder: Final = msgspec.json.Decoder(Command)


def method_of(command: Command) -> str | None:
    """The request field that is set; None for ``{}`` (a pong) or an unknown method.

    The server "will only take the first non-null request" (client.proto); more than
    one is refused by :func:`parse_frame`.
    """
    for name in METHODS:
        if getattr(command, name) is not None:
            return name
    return None


def _count_methods(command: Command) -> int:
    return sum(1 for name in METHODS if getattr(command, name) is not None)


def parse_frame(frame: str | bytes) -> list[Command]:
    """Every command of one frame, in order. Raises :class:`ProtocolError` on the first bad line.

    The caller gets nothing from a frame with a bad line: Centrifugo disconnects the
    client with "bad request" and a partly applied frame would only confuse it.
    """
    data = frame.encode() if isinstance(frame, str) else frame
    commands: list[Command] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(commands) >= MAX_COMMANDS_PER_FRAME:
            raise ProtocolError(f"more than {MAX_COMMANDS_PER_FRAME} commands in one frame")
        try:
            command = _decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"command {number}: {exc}") from exc
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            # (a binary frame need not be UTF-8; msgspec reports that as Unicode error)
            raise ProtocolError(f"command {number}: malformed JSON ({exc})") from exc
        if not 0 <= command.id <= UINT32_MAX:
            raise ProtocolError(f"command {number}: id {command.id} is not a uint32")
        if _count_methods(command) > 1:
            raise ProtocolError(f"command {number}: more than one request in a command")
        commands.append(command)
    return commands


# --- encoding -----------------------------------------------------------------------

_encoder: Final = msgspec.json.Encoder()


def encode_reply(command_id: int, method: str, result: Any) -> bytes:
    """``{"id": N, "<method>": <result>}``; ``result`` is anything msgspec encodes."""
    return b'{"id":%d,"%s":%s}' % (command_id, method.encode(), _encoder.encode(result))


def encode_error(command_id: int, error: ReplyError) -> bytes:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.temporary:
        body["temporary"] = True
    return b'{"id":%d,"error":%s}' % (command_id, _encoder.encode(body))


def encode_publication(data: bytes, offset: int = 0) -> bytes:
    """A ``Publication`` (``data`` is already JSON); offset 0 is left out (none)."""
    if offset:
        return b'{"data":%s,"offset":%d}' % (data, offset)
    return b'{"data":%s}' % data


def encode_push_pub(channel_json: bytes, publication: bytes) -> bytes:
    """``{"push":{"channel":…,"pub":…}}``. ``channel_json`` is the JSON-encoded channel.

    Built by concatenation: it runs once per publication per process, and the result
    goes unchanged to every subscriber (encode once, write many).
    """
    return b'{"push":{"channel":%s,"pub":%s}}' % (channel_json, publication)


def encode_push(channel: str, kind: str, body: Any) -> bytes:
    """Any other push (``unsubscribe``, ``disconnect``…)."""
    return b'{"push":{"channel":%s,"%s":%s}}' % (
        _encoder.encode(channel),
        kind.encode(),
        _encoder.encode(body),
    )


def encode_json(value: Any) -> bytes:
    return _encoder.encode(value)
