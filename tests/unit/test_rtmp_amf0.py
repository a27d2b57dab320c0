"""AMF0: round trips, and every refusal with its exact text (RELIABILITY.md, "RTMP ingest")."""

from __future__ import annotations

import struct

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.amf0 import ECMAArray, decode_all, encode, encode_all
from ingest.rtmp.errors import ProtocolError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -1.5,
        1e300,
        True,
        False,
        "",
        "publish",
        "ключ ✓",
        "x" * 70_000,  # a long string (2.14)
        None,
        {},
        {"app": "live", "capabilities": 31.0, "nested": {"a": [1.0, "b", None]}},
        ECMAArray({"width": 320.0, "height": 240.0, "stereo": True}),
        [],
        [1.0, [2.0, [3.0]], {"k": "v"}],
    ],
)
def test_values_round_trip(value: amf0.AMF0Value) -> None:
    assert decode_all(encode(value)) == [value]


def test_ecma_arrays_stay_ecma_arrays() -> None:
    (decoded,) = decode_all(encode(ECMAArray({"a": 1.0})))
    assert isinstance(decoded, ECMAArray)
    assert encode(decoded)[0] == amf0.ECMA_ARRAY


def test_a_command_as_ffmpeg_sends_it() -> None:
    wire = encode_all("connect", 1.0, {"app": "live", "type": "nonprivate"})
    assert wire.startswith(b"\x02\x00\x07connect\x00\x3f\xf0")
    assert decode_all(wire) == ["connect", 1.0, {"app": "live", "type": "nonprivate"}]


def test_ints_encode_as_numbers_and_bools_as_booleans() -> None:
    assert encode(3) == b"\x00" + struct.pack(">d", 3.0)
    assert encode(True) == b"\x01\x01"


def test_other_markers_decode() -> None:
    date = b"\x0b" + struct.pack(">d", 1234.0) + b"\x00\x00"
    undefined, unsupported = b"\x06", b"\x0d"
    typed = b"\x10\x00\x03Foo" + b"\x00\x01a" + encode(1.0) + b"\x00\x00\x09"
    xml = b"\x0f\x00\x00\x00\x03<a>"
    ecma_no_count = b"\x08\x00\x00\x00\x00\x00\x01k\x05\x00\x00\x09"  # the count is a hint
    assert decode_all(date + undefined + unsupported + typed + xml + ecma_no_count) == [
        1234.0,
        None,
        None,
        {"a": 1.0},
        "<a>",
        {"k": None},
    ]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode_all(b"\x02\x00\x02\xff\xfe") == ["\ufffd\ufffd"]


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x00\x01\x02", "AMF0: truncated number at offset 1: need 8 bytes, 2 left"),
        (b"\x01", "AMF0: truncated boolean at offset 1: need 1 bytes, 0 left"),
        (b"\x02\x00", "AMF0: truncated string length at offset 1: need 2 bytes, 1 left"),
        (
            b"\x02\x01\x00abc",
            "AMF0: string length 256 at offset 3 runs past the end (3 bytes left)",
        ),
        (
            b"\x0c\xff\xff\xff\xffabc",
            "AMF0: long string length 4294967295 at offset 5 runs past the end (3 bytes left)",
        ),
        (b"\x03\x00\x01a\x05", "AMF0: object at offset 0 has no end marker"),
        (
            b"\x03\x00\x00\x05",
            "AMF0: empty property name at offset 1 is not followed by the object-end marker",
        ),
        (
            b"\x0a\xff\xff\xff\xff\x05\x05",
            "AMF0: strict array at offset 0 declares 4294967295 elements but only 2 bytes follow",
        ),
        (
            b"\x11\x04\x01",
            "AMF0: AMF3 switch marker (0x11) at offset 0: AMF3 values are not supported",
        ),
        (b"\x07\x00\x01", "AMF0: reference (0x07) at offset 0 is not supported"),
        (b"\x04", "AMF0: reserved type marker 0x04 at offset 0"),
        (b"\x0e", "AMF0: reserved type marker 0x0e at offset 0"),
        (b"\x09", "AMF0: object-end marker outside an object at offset 0"),
        (b"\x12", "AMF0: unknown type marker 0x12 at offset 0"),
        (b"\x0b\x00", "AMF0: truncated date at offset 1: need 10 bytes, 1 left"),
        (b"\x08\x00\x00", "AMF0: truncated ECMA array count at offset 1: need 4 bytes, 2 left"),
    ],
)
def test_refusals(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_all(wire)
    assert str(caught.value) == message


def test_nesting_is_capped() -> None:
    deep = b"\x0a\x00\x00\x00\x01" * 10_000 + b"\x05"  # 10,000 nested strict arrays
    with pytest.raises(ProtocolError) as caught:
        decode_all(deep)
    assert str(caught.value) == "AMF0: nesting deeper than 32 levels at offset 160"


def test_nesting_up_to_the_cap_is_fine() -> None:
    value: amf0.AMF0Value = None
    for _ in range(amf0.MAX_DEPTH):
        value = [value]
    assert decode_all(encode(value)) == [value]


def test_encoding_refuses_what_cannot_be_represented() -> None:
    with pytest.raises(ValueError, match="property name of 0 bytes"):
        encode({"": 1.0})
