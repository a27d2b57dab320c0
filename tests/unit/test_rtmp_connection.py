"""The sans-IO connection: a publish from handshake to deleteStream, and every refusal."""

from __future__ import annotations

import itertools

import pytest

from ingest.rtmp import amf0
from ingest.rtmp.connection import TRANSITIONS, RTMPConnection, State, Trigger
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import (
    Closed,
    ConnectRequested,
    HandshakeCompleted,
    MediaMessage,
    MetaData,
    NeedData,
    PublishRequested,
    StreamCreated,
    StreamDeleted,
    UnhandledCommand,
)
from ingest.rtmp.limits import Limits
from ingest.rtmp.messages import (
    Acknowledgement,
    Command,
    MessageType,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
)
from tests.unit.rtmp_peer import (
    FIXTURES,
    Publisher,
    ServerReplies,
    det_random,
    drive,
    handshake,
)

pytestmark = pytest.mark.unit

VIDEO, AUDIO = MessageType.VIDEO, MessageType.AUDIO


def connected(**kwargs: object) -> tuple[RTMPConnection, Publisher, ServerReplies]:
    conn = RTMPConnection(random_bytes=det_random, **kwargs)  # type: ignore[arg-type]
    handshake(conn)
    client, replies = Publisher(), ServerReplies(handshake_done=True)
    events = drive(conn, client.connect(), replies=replies)
    assert isinstance(events[0], HandshakeCompleted)
    assert isinstance(events[1], ConnectRequested)
    return conn, client, replies


def publishing() -> tuple[RTMPConnection, Publisher, ServerReplies]:
    conn, client, replies = connected()
    events = drive(conn, client.publish_setup("secret-key"), replies=replies)
    assert events == [StreamCreated(1), PublishRequested(1, "secret-key", "live", 5.0)]
    assert conn.state is State.PUBLISHING
    return conn, client, replies


def info(command: Command) -> dict[str, amf0.AMF0Value]:
    """The info object an _result/_error/onStatus carries as its first argument."""
    first = command.arguments[0]
    assert isinstance(first, dict)
    return first


def state_of(conn: RTMPConnection) -> State:
    return conn.state


def error_of(conn: RTMPConnection, data: bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        drive(conn, data)
    return str(caught.value)


def test_a_whole_publish() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    handshake(conn)
    client, replies = Publisher(), ServerReplies(handshake_done=True)

    events = drive(conn, client.connect(), replies=replies)
    assert events[0] == HandshakeCompleted(digest=True, c2_verified=True)
    connect = events[1]
    assert isinstance(connect, ConnectRequested)
    assert (connect.app, connect.tc_url, connect.flash_ver) == ("live", "rtmp://h/live", "FMLE/3.0")
    # accept_connect: window, peer bandwidth, chunk size, then _result (as FMS answers).
    kinds = [m.type_id for m in replies.messages]
    assert kinds == [5, 6, 1, 20]
    assert WindowAckSize.parse(replies.messages[0].payload) == WindowAckSize(5_000_000)
    assert SetPeerBandwidth.parse(replies.messages[1].payload).limit_type == 2
    assert SetChunkSize.parse(replies.messages[2].payload) == SetChunkSize(4096)
    result = replies.commands()[0]
    assert (result.name, result.transaction_id) == ("_result", 1.0)
    assert info(result)["code"] == "NetConnection.Connect.Success"

    events = drive(conn, client.publish_setup("secret-key"), replies=replies)
    assert events == [StreamCreated(1), PublishRequested(1, "secret-key", "live", 5.0)]
    names = [(c.name, c.transaction_id) for c in replies.commands()[1:]]
    assert names == [
        ("_result", 2.0),  # releaseStream
        ("_result", 3.0),  # FCPublish
        ("onFCPublish", 0.0),
        ("_result", 4.0),  # createStream → 1
        ("onStatus", 0.0),  # publish accepted
    ]
    assert replies.commands()[4].arguments == (1.0,)
    stream_begin = [m for m in replies.messages if m.type_id == MessageType.USER_CONTROL]
    assert UserControl.parse(stream_begin[0].payload) == UserControl(
        UserControlEvent.STREAM_BEGIN, 1
    )
    on_status = replies.messages[-1]
    assert on_status.stream_id == 1
    assert info(Command.parse(on_status.payload)) == {
        "level": "status",
        "code": "NetStream.Publish.Start",
        "description": "Publishing started.",
    }

    events = drive(
        conn,
        client.metadata({"width": 320.0, "framerate": 30.0})
        + client.media(VIDEO, 0, b"\x17\x00\x00\x00\x00config")
        + client.media(AUDIO, 0, b"\xaf\x00\x12\x10")
        + client.media(VIDEO, 33, b"\x27\x01\x00\x00\x00frame"),
    )
    assert events == [
        MetaData(1, 0, {"width": 320.0, "framerate": 30.0}),
        MediaMessage(VIDEO, 1, 0, b"\x17\x00\x00\x00\x00config"),
        MediaMessage(AUDIO, 1, 0, b"\xaf\x00\x12\x10"),
        MediaMessage(VIDEO, 1, 33, b"\x27\x01\x00\x00\x00frame"),
    ]
    events = drive(
        conn,
        client.command("FCUnpublish", None, "secret-key")
        + client.command("deleteStream", None, 1.0),
    )
    assert events == [StreamDeleted(1, was_publishing=True)]
    assert conn.state is State.CONNECTED
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), Closed)
    assert state_of(conn) is State.CLOSED


def test_create_stream_hands_out_increasing_ids() -> None:
    conn, client, replies = connected()
    events = drive(
        conn,
        client.command("createStream")
        + client.command("createStream")
        + client.command("deleteStream", None, 1.0)
        + client.command("createStream"),
        replies=replies,
    )
    assert events == [StreamCreated(1), StreamCreated(2), StreamDeleted(1, False), StreamCreated(3)]
    assert [c.arguments for c in replies.commands()[1:]] == [(1.0,), (2.0,), (3.0,)]


def test_too_many_streams() -> None:
    conn, client, _ = connected()
    assert error_of(conn, client.command("createStream") * 9) == (
        "createStream: more than 8 streams on one connection"
    )


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (lambda c: c.command("createStream"), "createStream is not allowed while await-connect"),
        (
            lambda c: c.media(VIDEO, 0, b"\x17"),
            "video message on stream 1 is not allowed while await-connect",
        ),
        (
            lambda c: c.command("publish", None, "k", stream_id=1),
            "publish is not allowed while await-connect",
        ),
    ],
)
def test_nothing_before_connect(script: object, message: str) -> None:
    conn = RTMPConnection(random_bytes=det_random)
    handshake(conn)
    assert isinstance(conn.next_event(), HandshakeCompleted)
    assert error_of(conn, script(Publisher())) == message  # type: ignore[operator]
    assert conn.state is State.ERROR


def test_a_command_while_connect_is_pending() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    handshake(conn)
    client = Publisher()
    conn.receive_data(client.connect() + client.command("createStream"))
    assert isinstance(conn.next_event(), HandshakeCompleted)
    assert isinstance(conn.next_event(), ConnectRequested)
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()  # the application has not answered connect yet
    assert str(caught.value) == "createStream is not allowed while connect-pending"


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (lambda c: c.connect(), "connect is not allowed while connected"),
        (
            lambda c: c.media(AUDIO, 0, b"\xaf\x01"),
            "audio message on stream 1 is not allowed while connected",
        ),
        (
            lambda c: c.command("publish", None, "k", stream_id=7),
            "publish on stream 7, which createStream did not allocate (7.2.2.6)",
        ),
        (
            lambda c: c.command("createStream") + c.command("publish", None, stream_id=1),
            "publish: no publishing name (7.2.2.6)",
        ),
        (lambda c: c.command("deleteStream", None, "one"), "deleteStream: no stream id (7.2.2.3)"),
        (
            lambda c: c.command("connect", tid=9.0),
            "connect is not allowed while connected",
        ),
    ],
)
def test_refusals_while_connected(script: object, message: str) -> None:
    conn, client, _ = connected()
    assert error_of(conn, script(client)) == message  # type: ignore[operator]


def test_refusals_while_publishing() -> None:
    conn, client, _ = publishing()
    assert error_of(conn, client.media(VIDEO, 0, b"x", stream_id=2)) == (
        "video message on stream 2, but stream 1 is the one publishing"
    )
    conn, client, _ = publishing()
    assert error_of(
        conn, client.command("createStream") + client.command("publish", None, "k", stream_id=2)
    ) == ("publish is not allowed while publishing")


def test_connect_needs_an_app() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    handshake(conn)
    assert error_of(conn, Publisher().command("connect", {"tcUrl": "x"})) == (
        "connect: no 'app' string in the command object (7.2.1.1)"
    )


def test_a_failed_connection_stays_failed() -> None:
    conn, client, _ = connected()
    error_of(conn, client.connect())
    with pytest.raises(ProtocolError) as caught:
        conn.next_event()
    assert str(caught.value) == "connection already failed: connect is not allowed while connected"
    with pytest.raises(ProtocolError):
        conn.receive_data(b"more")


def test_reject_connect_closes() -> None:
    conn = RTMPConnection(random_bytes=det_random)
    handshake(conn)
    replies = ServerReplies(handshake_done=True)
    drive(conn, Publisher().connect("vod"), accept_connect=False, replies=replies)
    (error,) = replies.commands()
    assert error.name == "_error"
    assert error.arguments[0] == {
        "level": "error",
        "code": "NetConnection.Connect.Rejected",
        "description": "no",
    }
    assert conn.state is State.CLOSED
    assert isinstance(conn.next_event(), Closed)


def test_reject_publish_goes_back_to_connected() -> None:
    conn, client, replies = connected()
    events = drive(conn, client.publish_setup("bad"), accept_publish=False, replies=replies)
    assert isinstance(events[-1], PublishRequested)
    status = replies.commands()[-1]
    assert info(status)["code"] == "NetStream.Publish.BadName"
    assert conn.state is State.CONNECTED
    events = drive(conn, client.command("publish", None, "good", "live", stream_id=1))
    assert events == [PublishRequested(1, "good", "live", 6.0)]


def test_unknown_commands_are_answered_with_error() -> None:
    conn, client, replies = connected()
    events = drive(
        conn, client.command("play", None, "x") + client.command("_checkbw"), replies=replies
    )
    assert events == [UnhandledCommand("play", 0, 2.0), UnhandledCommand("_checkbw", 0, 3.0)]
    errors = replies.commands()[1:]
    assert [(e.name, e.transaction_id) for e in errors] == [("_error", 2.0), ("_error", 3.0)]
    assert info(errors[0])["code"] == "NetConnection.Call.Failed"


def test_acknowledgements_follow_the_peers_window() -> None:
    conn, client, replies = publishing()
    window = client.writer.write(2, MessageType.WINDOW_ACK_SIZE, 0, 0, bytes(WindowAckSize(10_000)))
    drive(conn, window, replies=replies)
    acked = []
    for i in range(30):
        drive(conn, client.media(AUDIO, i * 23, b"\xaf\x01" + bytes(998)), replies=replies)
        acked = [
            Acknowledgement.parse(m.payload).sequence for m in replies.messages if m.type_id == 3
        ]
    # 5.4.3: one acknowledgement per window of bytes received, carrying the total.
    assert len(acked) == conn.bytes_received // 10_000
    assert all(b - a >= 10_000 for a, b in itertools.pairwise([0, *acked]))
    assert acked[-1] <= conn.bytes_received


def test_ping_requests_are_answered() -> None:
    conn, client, replies = connected()
    ping = client.writer.write(
        2, MessageType.USER_CONTROL, 0, 0, bytes(UserControl(UserControlEvent.PING_REQUEST, 777))
    )
    drive(conn, ping, replies=replies)
    pong = replies.messages[-1]
    assert UserControl.parse(pong.payload) == UserControl(UserControlEvent.PING_RESPONSE, 777)


def test_the_peers_chunk_size_applies() -> None:
    conn, client, _ = publishing()
    events = drive(
        conn, client.set_chunk_size(4096) + client.media(VIDEO, 0, b"\x17" + bytes(3999))
    )
    assert events == [MediaMessage(VIDEO, 1, 0, b"\x17" + bytes(3999))]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00\x00\x00", "Set Chunk Size: 0 is not a valid chunk size (5.4.1: 1 to 2^31-1)"),
        (
            b"\xff\xff\xff\xff",
            "Set Chunk Size: 0xffffffff has bit 31 set, which MUST be zero (5.4.1)",
        ),
    ],
)
def test_bad_chunk_sizes_from_the_peer(raw: bytes, message: str) -> None:
    conn, client, _ = connected()
    assert error_of(conn, client.set_chunk_size(0, raw=raw)) == message


def test_aggregate_messages_are_split() -> None:
    conn, client, _ = publishing()

    def sub(type_id: int, ts: int, body: bytes) -> bytes:
        header = (
            bytes((type_id,)) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
        )
        return (
            header
            + bytes((ts >> 24,))
            + b"\x00\x00\x00"
            + body
            + (11 + len(body)).to_bytes(4, "big")
        )

    payload = sub(9, 5000, b"\x17\x01vid") + sub(8, 5020, b"\xaf\x01aud")
    events = drive(conn, client.media(MessageType.AGGREGATE, 100, payload, csid=6))
    assert events == [
        MediaMessage(VIDEO, 1, 100, b"\x17\x01vid"),
        MediaMessage(AUDIO, 1, 120, b"\xaf\x01aud"),
    ]
    assert error_of(conn, client.media(MessageType.AGGREGATE, 200, payload[:-9], csid=6)) == (
        "aggregate: sub-message at offset 20 declares 5 bytes, past the end (0 left)"
    )


def test_eof_in_the_middle_of_a_message_is_a_close() -> None:
    conn, client, _ = publishing()
    conn.receive_data(client.media(VIDEO, 0, bytes(300))[:100])
    assert isinstance(conn.next_event(), NeedData)
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), Closed)


def test_state_changes_are_reported() -> None:
    seen: list[tuple[State, State, Trigger]] = []
    conn = RTMPConnection(
        random_bytes=det_random, on_state_change=lambda *change: seen.append(change)
    )
    handshake(conn)
    drive(conn, Publisher().connect())
    assert [(old.value, new.value) for old, new, _ in seen] == [
        ("handshake", "handshake-ack"),
        ("handshake-ack", "await-connect"),
        ("await-connect", "connect-pending"),
        ("connect-pending", "connected"),
    ]


def test_the_table_has_an_exit_from_every_open_state() -> None:
    for state in State:
        assert (state, Trigger.FAIL) in TRANSITIONS
        if state not in (State.CLOSED, State.ERROR):
            assert TRANSITIONS[(state, Trigger.PEER_CLOSED)] is State.CLOSED
    reachable = {State.HANDSHAKE} | set(TRANSITIONS.values())
    assert reachable == set(State)


def test_the_captured_ffmpeg_session_replays() -> None:
    data = (FIXTURES / "ffmpeg_silent_6s.bin").read_bytes()
    whole = drive(RTMPConnection(random_bytes=det_random), [data, b""])
    assert whole[0] == HandshakeCompleted(digest=True, c2_verified=True)
    publish = next(e for e in whole if isinstance(e, PublishRequested))
    assert (publish.stream_id, publish.name, publish.publish_type) == (1, "fixture-key", "live")
    media = [e for e in whole if isinstance(e, MediaMessage)]
    audio = [e.timestamp for e in media if not e.is_video]
    assert len(audio) == 261
    assert audio[-1] == 6014  # NOTES.md: the 6.06 s of audio pyrtmp cut at 4.1 s
    assert isinstance(whole[-2], StreamDeleted)
    assert isinstance(whole[-1], Closed)
    # Byte by byte gives the same events (a 1-byte TCP read is legal).
    pieces = [data[i : i + 1] for i in range(len(data))] + [b""]
    assert drive(RTMPConnection(random_bytes=det_random), pieces) == whole


def test_metadata_reaches_the_application_as_sent() -> None:
    conn, client, _ = publishing()
    values = amf0.ECMAArray(
        {"encoder": "obs-output module (libobs version 30.1.2)", "stereo": True}
    )
    (event,) = drive(conn, client.metadata(values))
    assert event == MetaData(1, 0, dict(values))


def test_limits_are_the_connections() -> None:
    conn, client, _ = connected(limits=Limits(max_command_message=100))
    assert error_of(conn, client.command("x" * 200)) == (
        "chunk stream 3: message of type 20 declares 213 bytes, over the 100-byte limit "
        "for that type"
    )
