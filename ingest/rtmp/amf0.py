"""AMF0, the value encoding of RTMP commands and data messages.

Reference: Adobe, "Action Message Format -- AMF 0" (December 2007); section numbers in
the comments below are that document's. RTMP carries AMF0 in command messages (RTMP
spec 7.1.1, type 20), data messages (7.1.2, type 18, e.g. ``@setDataFrame onMetaData``)
and, after a one-byte prefix, in their AMF3-typed twins (types 17 and 15).

Decoding is defensive: every length is checked against the bytes that are really
there before anything is allocated, containers nest at most :data:`MAX_DEPTH` deep,
and anything we do not speak (AMF3 inside AMF0, references, reserved markers) is a
:class:`~ingest.rtmp.errors.ProtocolError`. Python values:

=====================  ==================================
AMF0                   Python
=====================  ==================================
number, date           ``float`` (a date is its milliseconds since the epoch)
boolean                ``bool``
string, long string,   ``str`` (UTF-8; invalid bytes become U+FFFD)
XML document
null, undefined,       ``None``
unsupported
object, typed object   ``dict[str, value]`` (a typed object's class name is dropped)
ECMA array             :class:`ECMAArray` (a ``dict``; encodes back as an ECMA array)
strict array           ``list``
=====================  ==================================
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, TypeAlias, Union

from ingest.rtmp.errors import ProtocolError

__all__ = ["MAX_DEPTH", "AMF0Value", "ECMAArray", "decode_all", "encode", "encode_all"]

# Type markers (2.1).
NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04  # reserved, not supported (2.1)
NULL: Final = 0x05
UNDEFINED: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
RECORDSET: Final = 0x0E  # reserved, not supported (2.1)
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11  # "switch to AMF3" (2.17)

# Commands from OBS and ffmpeg nest two or three levels (connect's command object,
# onMetaData's ECMA array). 32 is generous and keeps recursion far from Python's
# limit: RELIABILITY.md asks that 10,000-deep nesting be refused, not followed.
MAX_DEPTH: Final = 32
# A string longer than this is encoded as a long string (2.14): the u16 length of 2.4.
_U16_MAX: Final = 0xFFFF

_NUMBER = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class ECMAArray(dict[str, "AMF0Value"]):
    """An ECMA (associative) array (2.10), e.g. the body of ``onMetaData``."""


AMF0Value: TypeAlias = Union[  # noqa: UP007 - a runtime alias with forward references
    float, bool, str, ECMAArray, dict[str, "AMF0Value"], list["AMF0Value"], None
]


def decode_all(data: bytes, *, max_depth: int = MAX_DEPTH) -> list[AMF0Value]:
    """Every value in ``data``, in order; ``ProtocolError`` if any byte is not AMF0."""
    decoder = _Decoder(data, max_depth)
    values: list[AMF0Value] = []
    while decoder.pos < len(data):
        values.append(decoder.value(0))
    return values


def encode(value: AMF0Value) -> bytes:
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def encode_all(*values: AMF0Value) -> bytes:
    out = bytearray()
    for value in values:
        _encode_into(out, value, 0)
    return bytes(out)


class _Decoder:
    __slots__ = ("data", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def _need(self, size: int, what: str) -> None:
        left = len(self.data) - self.pos
        if size > left:
            raise ProtocolError(
                f"AMF0: truncated {what} at offset {self.pos}: need {size} bytes, {left} left"
            )

    def _u16(self, what: str) -> int:
        self._need(2, what)
        (value,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(value)

    def _u32(self, what: str) -> int:
        self._need(4, what)
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def _text(self, size: int, what: str) -> str:
        # The length is checked against the buffer before any slice is taken (2.4, 2.14).
        left = len(self.data) - self.pos
        if size > left:
            raise ProtocolError(
                f"AMF0: {what} length {size} at offset {self.pos} runs past the end "
                f"({left} bytes left)"
            )
        text = self.data[self.pos : self.pos + size].decode("utf-8", "replace")
        self.pos += size
        return text

    def value(self, depth: int) -> AMF0Value:
        self._need(1, "type marker")
        start = self.pos
        marker = self.data[start]
        self.pos += 1
        read = _READERS.get(marker)
        if read is not None:
            return read(self)
        if marker in _CONTAINERS:
            if depth >= self.max_depth:
                raise ProtocolError(
                    f"AMF0: nesting deeper than {self.max_depth} levels at offset {start}"
                )
            if marker == STRICT_ARRAY:  # 2.12
                return self._strict_array(start, depth + 1)
            if marker == ECMA_ARRAY:  # 2.10: the u32 count is only a hint; read to the end
                self._u32("ECMA array count")
                return self._properties(ECMAArray(), start, depth + 1)
            if marker == TYPED_OBJECT:  # 2.18: class name, then an object's properties
                self._text(self._u16("class name length"), "class name")
            return self._properties({}, start, depth + 1)  # 2.5
        refusal = _REFUSED.get(marker, "unknown type marker 0x{marker:02x} at offset {offset}")
        raise ProtocolError("AMF0: " + refusal.format(marker=marker, offset=start))

    def _number(self) -> float:  # 2.2: IEEE-754 double, big-endian
        self._need(8, "number")
        (number,) = _NUMBER.unpack_from(self.data, self.pos)
        self.pos += 8
        return float(number)

    def _boolean(self) -> bool:  # 2.3
        self._need(1, "boolean")
        self.pos += 1
        return self.data[self.pos - 1] != 0

    def _string(self) -> str:  # 2.4: u16 length
        return self._text(self._u16("string length"), "string")

    def _long_string(self) -> str:  # 2.14, 2.16: u32 length
        return self._text(self._u32("long string length"), "long string")

    def _nothing(self) -> None:  # 2.7 null, 2.8 undefined, 2.15 unsupported
        return None

    def _date(self) -> float:  # 2.13: double milliseconds + s16 time zone (unused)
        self._need(10, "date")
        (millis,) = _NUMBER.unpack_from(self.data, self.pos)
        self.pos += 10
        return float(millis)

    def _properties(
        self, target: dict[str, AMF0Value], start: int, depth: int
    ) -> dict[str, AMF0Value]:
        # 2.5: (UTF-8 name, value)* then an empty name and the object-end marker.
        while True:
            if self.pos >= len(self.data):
                raise ProtocolError(f"AMF0: object at offset {start} has no end marker")
            size = self._u16("property name length")
            if size == 0:
                self._need(1, "object-end marker")
                if self.data[self.pos] != OBJECT_END:
                    raise ProtocolError(
                        f"AMF0: empty property name at offset {self.pos - 2} is not followed "
                        "by the object-end marker"
                    )
                self.pos += 1
                return target
            name = self._text(size, "property name")
            target[name] = self.value(depth)

    def _strict_array(self, start: int, depth: int) -> list[AMF0Value]:
        count = self._u32("strict array count")
        left = len(self.data) - self.pos
        # Each element is at least its one-byte marker: a count above the bytes left is
        # a lie, refused before looping (RELIABILITY.md: array count 2^32-1).
        if count > left:
            raise ProtocolError(
                f"AMF0: strict array at offset {start} declares {count} elements but only "
                f"{left} bytes follow"
            )
        return [self.value(depth) for _ in range(count)]


_READERS: Final[dict[int, Callable[[_Decoder], AMF0Value]]] = {
    NUMBER: _Decoder._number,
    BOOLEAN: _Decoder._boolean,
    STRING: _Decoder._string,
    LONG_STRING: _Decoder._long_string,
    XML_DOCUMENT: _Decoder._long_string,
    NULL: _Decoder._nothing,
    UNDEFINED: _Decoder._nothing,
    UNSUPPORTED: _Decoder._nothing,
    DATE: _Decoder._date,
}
_CONTAINERS: Final = frozenset({OBJECT, ECMA_ARRAY, TYPED_OBJECT, STRICT_ARRAY})
_REFUSED: Final = {
    OBJECT_END: "object-end marker outside an object at offset {offset}",
    AVMPLUS: "AMF3 switch marker (0x11) at offset {offset}: AMF3 values are not supported",
    REFERENCE: "reference (0x07) at offset {offset} is not supported",
    MOVIECLIP: "reserved type marker 0x{marker:02x} at offset {offset}",
    RECORDSET: "reserved type marker 0x{marker:02x} at offset {offset}",
}


def _encode_into(out: bytearray, value: AMF0Value, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"AMF0: refusing to encode values nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(NULL)
    elif isinstance(value, bool):  # before numbers: bool is an int
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _NUMBER.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= _U16_MAX:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, ECMAArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item, depth + 1)
    else:  # pragma: no cover - the type alias admits nothing else
        raise TypeError(f"AMF0: cannot encode {type(value).__name__}")


def _encode_properties(out: bytearray, properties: dict[str, AMF0Value], depth: int) -> None:
    for name, item in properties.items():
        raw = name.encode("utf-8")
        if not raw or len(raw) > _U16_MAX:
            raise ValueError(f"AMF0: property name of {len(raw)} bytes cannot be encoded")
        out += _U16.pack(len(raw))
        out += raw
        _encode_into(out, item, depth + 1)
    out += b"\x00\x00"
    out.append(OBJECT_END)
