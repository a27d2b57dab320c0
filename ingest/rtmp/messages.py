"""RTMP messages: type ids, the protocol control messages and AMF0 commands as wire structs.

Each struct parses from a message payload (``parse``) and serializes back
(``__bytes__``); a payload of the wrong size is a :class:`ProtocolError` naming the
spec section. Section numbers are Adobe's RTMP specification 1.0 (December 2012).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Final, Self

from ingest.rtmp import amf0
from ingest.rtmp.errors import ProtocolError

__all__ = [
    "MAX_CHUNK_SIZE",
    "Abort",
    "Acknowledgement",
    "Command",
    "DataMessage",
    "LimitType",
    "Message",
    "MessageType",
    "SetChunkSize",
    "SetPeerBandwidth",
    "UserControl",
    "UserControlEvent",
    "WindowAckSize",
]

# 5.4.1: "Valid sizes are 1 to 2147483647 (0x7FFFFFFF) inclusive"; bit 31 MUST be zero.
MAX_CHUNK_SIZE: Final = 0x7FFFFFFF

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U32_U8 = struct.Struct(">IB")
_U16_U32 = struct.Struct(">HI")
_U16_U32_U32 = struct.Struct(">HII")


class MessageType(enum.IntEnum):
    """Message type ids (5.4 protocol control, 6.2 user control, 7.1 RTMP messages)."""

    SET_CHUNK_SIZE = 1  # 5.4.1
    ABORT = 2  # 5.4.2
    ACKNOWLEDGEMENT = 3  # 5.4.3
    USER_CONTROL = 4  # 6.2, 7.1.7
    WINDOW_ACK_SIZE = 5  # 5.4.4
    SET_PEER_BANDWIDTH = 6  # 5.4.5
    AUDIO = 8  # 7.1.4
    VIDEO = 9  # 7.1.5
    DATA_AMF3 = 15  # 7.1.2
    SHARED_OBJECT_AMF3 = 16  # 7.1.3
    COMMAND_AMF3 = 17  # 7.1.1
    DATA_AMF0 = 18  # 7.1.2
    SHARED_OBJECT_AMF0 = 19  # 7.1.3
    COMMAND_AMF0 = 20  # 7.1.1
    AGGREGATE = 22  # 7.1.6


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled message (5.1 / 5.3): header fields and the whole payload."""

    type_id: int
    stream_id: int
    timestamp: int  # milliseconds, modulo 2^32 (5.3.1.3 / 6.1.1)
    payload: bytes
    csid: int = 0  # the chunk stream it arrived on (0: not known / not relevant)


def _exact(payload: bytes, size: int, name: str, section: str) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{name}: payload is {len(payload)} bytes, expected {size} ({section})")


@dataclass(frozen=True, slots=True)
class SetChunkSize:
    """5.4.1: the sender's new maximum chunk size."""

    type_id: ClassVar[int] = MessageType.SET_CHUNK_SIZE
    size: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        _exact(payload, 4, "Set Chunk Size", "5.4.1")
        (raw,) = _U32.unpack(payload)
        if raw & 0x80000000:
            raise ProtocolError(
                f"Set Chunk Size: 0x{raw:08x} has bit 31 set, which MUST be zero (5.4.1)"
            )
        if raw == 0:
            raise ProtocolError("Set Chunk Size: 0 is not a valid chunk size (5.4.1: 1 to 2^31-1)")
        return cls(int(raw))

    def __bytes__(self) -> bytes:
        if not 1 <= self.size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {self.size} outside 1..{MAX_CHUNK_SIZE}")
        return _U32.pack(self.size)


@dataclass(frozen=True, slots=True)
class Abort:
    """5.4.2: discard the partly received message on a chunk stream."""

    type_id: ClassVar[int] = MessageType.ABORT
    csid: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        _exact(payload, 4, "Abort Message", "5.4.2")
        return cls(int(_U32.unpack(payload)[0]))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.csid)


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """5.4.3: the bytes received so far (modulo 2^32)."""

    type_id: ClassVar[int] = MessageType.ACKNOWLEDGEMENT
    sequence: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        _exact(payload, 4, "Acknowledgement", "5.4.3")
        return cls(int(_U32.unpack(payload)[0]))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.sequence & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class WindowAckSize:
    """5.4.4: acknowledge after this many bytes."""

    type_id: ClassVar[int] = MessageType.WINDOW_ACK_SIZE
    size: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        _exact(payload, 4, "Window Acknowledgement Size", "5.4.4")
        (size,) = _U32.unpack(payload)
        if size == 0:
            raise ProtocolError("Window Acknowledgement Size: 0 (5.4.4)")
        return cls(int(size))

    def __bytes__(self) -> bytes:
        return _U32.pack(self.size)


class LimitType(enum.IntEnum):
    """5.4.5: how the peer should apply a Set Peer Bandwidth."""

    HARD = 0
    SOFT = 1
    DYNAMIC = 2


@dataclass(frozen=True, slots=True)
class SetPeerBandwidth:
    """5.4.5: limit the peer's output bandwidth (in practice: its ack window)."""

    type_id: ClassVar[int] = MessageType.SET_PEER_BANDWIDTH
    size: int
    limit_type: int = LimitType.DYNAMIC

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        _exact(payload, 5, "Set Peer Bandwidth", "5.4.5")
        size, limit_type = _U32_U8.unpack(payload)
        if limit_type > LimitType.DYNAMIC:
            raise ProtocolError(f"Set Peer Bandwidth: unknown limit type {limit_type} (5.4.5)")
        return cls(int(size), int(limit_type))

    def __bytes__(self) -> bytes:
        return _U32_U8.pack(self.size, self.limit_type)


class UserControlEvent(enum.IntEnum):
    """7.1.7 User Control Message Events."""

    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


@dataclass(frozen=True, slots=True)
class UserControl:
    """6.2 / 7.1.7: a 2-byte event type and its data.

    ``value`` is the stream id (stream events) or the timestamp (ping events);
    ``buffer_ms`` is set only for Set Buffer Length.
    """

    type_id: ClassVar[int] = MessageType.USER_CONTROL
    event: int
    value: int
    buffer_ms: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        if len(payload) < 6:
            raise ProtocolError(
                f"User Control: payload is {len(payload)} bytes, need at least 6 (7.1.7)"
            )
        if len(payload) > 10:
            raise ProtocolError(
                f"User Control: payload is {len(payload)} bytes, at most 10 (7.1.7)"
            )
        event, value = _U16_U32.unpack_from(payload)
        if event == UserControlEvent.SET_BUFFER_LENGTH:
            _exact(payload, 10, "User Control Set Buffer Length", "7.1.7")
            return cls(int(event), int(value), int(_U32.unpack_from(payload, 6)[0]))
        return cls(int(event), int(value))

    def __bytes__(self) -> bytes:
        if self.event == UserControlEvent.SET_BUFFER_LENGTH:
            return _U16_U32_U32.pack(self.event, self.value, self.buffer_ms)
        return _U16_U32.pack(self.event, self.value)


@dataclass(frozen=True, slots=True)
class Command:
    """7.1.1 / 7.2: name, transaction id, command object, then optional arguments."""

    name: str
    transaction_id: float
    command_object: amf0.AMF0Value = None
    arguments: tuple[amf0.AMF0Value, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, payload: bytes, *, amf3: bool = False) -> Self:
        body = _strip_amf3_prefix(payload, "command") if amf3 else payload
        values = amf0.decode_all(body)
        if len(values) < 2:
            raise ProtocolError(
                f"command: {len(values)} AMF0 values, need a name and a transaction id (7.1.1)"
            )
        name, transaction_id = values[0], values[1]
        if not isinstance(name, str):
            raise ProtocolError(f"command: name is {_kind(name)}, expected a string (7.1.1)")
        if not isinstance(transaction_id, float):
            raise ProtocolError(
                f"command {name!r}: transaction id is {_kind(transaction_id)}, expected a number"
            )
        command_object = values[2] if len(values) > 2 else None
        return cls(name, transaction_id, command_object, tuple(values[3:]))

    def __bytes__(self) -> bytes:
        return amf0.encode_all(self.name, self.transaction_id, self.command_object, *self.arguments)


@dataclass(frozen=True, slots=True)
class DataMessage:
    """7.1.2: a handler name and values (``@setDataFrame``, ``onMetaData``, …)."""

    name: str
    values: tuple[amf0.AMF0Value, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, payload: bytes, *, amf3: bool = False) -> Self:
        body = _strip_amf3_prefix(payload, "data message") if amf3 else payload
        values = amf0.decode_all(body)
        if not values or not isinstance(values[0], str):
            raise ProtocolError("data message: does not start with a handler name (7.1.2)")
        return cls(values[0], tuple(values[1:]))

    def __bytes__(self) -> bytes:
        return amf0.encode_all(self.name, *self.values)


def _strip_amf3_prefix(payload: bytes, what: str) -> bytes:
    # Types 17/15 start with a format byte; 0 means "AMF0 values follow" (what Flash
    # sends with objectEncoding 3 until an AMF3 value is needed, which we refuse).
    if not payload:
        raise ProtocolError(f"{what} (AMF3 type): empty payload (7.1.1)")
    if payload[0] != 0:
        raise ProtocolError(
            f"{what} (AMF3 type): format byte 0x{payload[0]:02x}, only AMF0 bodies are supported"
        )
    return payload[1:]


def _kind(value: amf0.AMF0Value) -> str:
    return "null" if value is None else type(value).__name__
