"""Protocol control messages and commands as wire structs (RTMP 5.4, 6.2, 7.1)."""

from __future__ import annotations

import pytest

from ingest.rtmp.amf0 import encode_all
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.messages import (
    Abort,
    Acknowledgement,
    Command,
    DataMessage,
    LimitType,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("struct", "wire"),
    [
        (SetChunkSize(4096), b"\x00\x00\x10\x00"),
        (SetChunkSize(1), b"\x00\x00\x00\x01"),
        (SetChunkSize(0x7FFFFFFF), b"\x7f\xff\xff\xff"),
        (Abort(5), b"\x00\x00\x00\x05"),
        (Acknowledgement(5_000_000), b"\x00\x4c\x4b\x40"),
        (WindowAckSize(2_500_000), b"\x00\x26\x25\xa0"),
        (SetPeerBandwidth(2_500_000, LimitType.DYNAMIC), b"\x00\x26\x25\xa0\x02"),
        (UserControl(UserControlEvent.STREAM_BEGIN, 1), b"\x00\x00\x00\x00\x00\x01"),
        (UserControl(UserControlEvent.PING_REQUEST, 3343), b"\x00\x06\x00\x00\x0d\x0f"),
        (
            UserControl(UserControlEvent.SET_BUFFER_LENGTH, 1, 3000),
            b"\x00\x03" + b"\x00\x00\x00\x01\x00\x00\x0b\xb8",
        ),
    ],
)
def test_control_messages_round_trip(
    struct: SetChunkSize | Abort | Acknowledgement | WindowAckSize | SetPeerBandwidth | UserControl,
    wire: bytes,
) -> None:
    assert bytes(struct) == wire
    assert struct.parse(wire) == struct  # the classmethod, reached through the instance


@pytest.mark.parametrize(
    ("cls", "wire", "message"),
    [
        (
            SetChunkSize,
            b"\x00\x00\x00\x00",
            "Set Chunk Size: 0 is not a valid chunk size (5.4.1: 1 to 2^31-1)",
        ),
        (
            SetChunkSize,
            b"\x80\x00\x10\x00",
            "Set Chunk Size: 0x80001000 has bit 31 set, which MUST be zero (5.4.1)",
        ),
        (SetChunkSize, b"\x00\x10\x00", "Set Chunk Size: payload is 3 bytes, expected 4 (5.4.1)"),
        (Abort, b"", "Abort Message: payload is 0 bytes, expected 4 (5.4.2)"),
        (Acknowledgement, b"\x00" * 5, "Acknowledgement: payload is 5 bytes, expected 4 (5.4.3)"),
        (WindowAckSize, b"\x00" * 4, "Window Acknowledgement Size: 0 (5.4.4)"),
        (
            SetPeerBandwidth,
            b"\x00\x00\x00\x01\x07",
            "Set Peer Bandwidth: unknown limit type 7 (5.4.5)",
        ),
        (UserControl, b"\x00\x06\x00", "User Control: payload is 3 bytes, need at least 6 (7.1.7)"),
        (UserControl, b"\x00" * 11, "User Control: payload is 11 bytes, at most 10 (7.1.7)"),
        (
            UserControl,
            b"\x00\x03\x00\x00\x00\x01",
            "User Control Set Buffer Length: payload is 6 bytes, expected 10 (7.1.7)",
        ),
    ],
)
def test_control_message_refusals(
    cls: type[
        SetChunkSize | Abort | Acknowledgement | WindowAckSize | SetPeerBandwidth | UserControl
    ],
    wire: bytes,
    message: str,
) -> None:
    with pytest.raises(ProtocolError) as caught:
        cls.parse(wire)
    assert str(caught.value) == message


def test_command_round_trip() -> None:
    command = Command("publish", 5.0, None, ("key", "live"))
    assert Command.parse(bytes(command)) == command
    assert bytes(command) == encode_all("publish", 5.0, None, "key", "live")


def test_amf3_typed_command_with_an_amf0_body() -> None:
    body = encode_all("connect", 1.0, {"app": "live"})
    assert Command.parse(b"\x00" + body, amf3=True) == Command("connect", 1.0, {"app": "live"})
    with pytest.raises(ProtocolError) as caught:
        Command.parse(b"\x11" + body, amf3=True)
    assert str(caught.value) == (
        "command (AMF3 type): format byte 0x11, only AMF0 bodies are supported"
    )


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (encode_all("connect"), "command: 1 AMF0 values, need a name and a transaction id (7.1.1)"),
        (encode_all(1.0, 1.0), "command: name is float, expected a string (7.1.1)"),
        (
            encode_all("connect", "one"),
            "command 'connect': transaction id is str, expected a number",
        ),
        (
            encode_all("connect", None),
            "command 'connect': transaction id is null, expected a number",
        ),
    ],
)
def test_command_refusals(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        Command.parse(wire)
    assert str(caught.value) == message


def test_data_message() -> None:
    data = DataMessage("@setDataFrame", ("onMetaData", {"width": 320.0}))
    assert DataMessage.parse(bytes(data)) == data
    with pytest.raises(ProtocolError) as caught:
        DataMessage.parse(encode_all(1.0))
    assert str(caught.value) == "data message: does not start with a handler name (7.1.2)"
