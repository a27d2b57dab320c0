"""The sans-IO RTMP server connection: bytes in, events out, bytes to send (h11's shape).

Usage::

    conn = RTMPConnection()
    conn.receive_data(data)            # b"" when the peer closed
    while (event := conn.next_event()) is not NEED_DATA:
        ...                            # e.g. PublishRequested → conn.accept_publish()
        transport.write(conn.data_to_send())

Protocol housekeeping happens inside: the handshake answer, Acknowledgements when the
peer's window is reached (5.4.3), Ping responses (7.1.7), the answers to
createStream/releaseStream/FCPublish/FCUnpublish. What needs a decision surfaces as an
event; the ``accept_*``/``reject_*``/``send_*`` methods return the bytes to write
(including any housekeeping bytes queued before them, so order is kept).

Every state change goes through :meth:`RTMPConnection._set_state` and
:data:`TRANSITIONS` below — the one table of what may happen when. Anything else is a
:class:`ProtocolError`; after one, the connection is in ``ERROR`` and stays there.

Section numbers are Adobe's RTMP specification 1.0.
"""

from __future__ import annotations

import enum
import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Final

from ingest.rtmp import amf0
from ingest.rtmp.chunks import ChunkReader, ChunkWriter
from ingest.rtmp.errors import ProtocolError
from ingest.rtmp.events import (
    NEED_DATA,
    Closed,
    ConnectRequested,
    Event,
    HandshakeCompleted,
    MediaMessage,
    MetaData,
    NeedData,
    PublishRequested,
    StreamCreated,
    StreamDeleted,
    UnhandledCommand,
)
from ingest.rtmp.handshake import HANDSHAKE_SIZE, ServerHandshake, check_c0
from ingest.rtmp.limits import DEFAULT_LIMITS, Limits
from ingest.rtmp.messages import (
    Abort,
    Acknowledgement,
    Command,
    DataMessage,
    LimitType,
    Message,
    MessageType,
    SetChunkSize,
    SetPeerBandwidth,
    UserControl,
    UserControlEvent,
    WindowAckSize,
)

__all__ = ["TRANSITIONS", "RTMPConnection", "State", "Trigger"]


class State(enum.Enum):
    HANDSHAKE = "handshake"  # waiting for C0+C1 (5.2.1)
    HANDSHAKE_ACK = "handshake-ack"  # S0+S1+S2 sent, waiting for C2
    AWAIT_CONNECT = "await-connect"  # the first command must be connect (7.2.1.1)
    CONNECT_PENDING = "connect-pending"  # ConnectRequested handed to the application
    CONNECTED = "connected"
    PUBLISH_PENDING = "publish-pending"  # PublishRequested handed to the application
    PUBLISHING = "publishing"
    CLOSED = "closed"
    ERROR = "error"


class Trigger(enum.Enum):
    C0C1 = "C0+C1"
    C2 = "C2"
    CONNECT = "connect"
    ACCEPT_CONNECT = "accept connect"
    REJECT_CONNECT = "reject connect"
    CREATE_STREAM = "createStream"
    STREAM_COMMAND = "releaseStream/FCPublish/FCUnpublish/deleteStream"
    CALL = "another command"
    PUBLISH = "publish"
    ACCEPT_PUBLISH = "accept publish"
    REJECT_PUBLISH = "reject publish"
    MEDIA = "audio/video/data message"
    UNPUBLISH = "deleteStream of the publishing stream"
    PEER_CLOSED = "peer closed"
    CLOSE = "close"
    FAIL = "protocol error"


S, T = State, Trigger
_LIVE: Final = (S.CONNECTED, S.PUBLISHING)
_OPEN: Final = tuple(s for s in State if s not in (S.CLOSED, S.ERROR))

# The state table: (state, trigger) → next state. Whatever is missing is refused.
TRANSITIONS: Final[dict[tuple[State, Trigger], State]] = {
    (S.HANDSHAKE, T.C0C1): S.HANDSHAKE_ACK,
    (S.HANDSHAKE_ACK, T.C2): S.AWAIT_CONNECT,
    (S.AWAIT_CONNECT, T.CONNECT): S.CONNECT_PENDING,
    (S.CONNECT_PENDING, T.ACCEPT_CONNECT): S.CONNECTED,
    (S.CONNECT_PENDING, T.REJECT_CONNECT): S.CLOSED,
    **{(s, T.CREATE_STREAM): s for s in _LIVE},
    **{(s, T.STREAM_COMMAND): s for s in _LIVE},
    **{(s, T.CALL): s for s in _LIVE},
    (S.CONNECTED, T.PUBLISH): S.PUBLISH_PENDING,
    (S.PUBLISH_PENDING, T.ACCEPT_PUBLISH): S.PUBLISHING,
    (S.PUBLISH_PENDING, T.REJECT_PUBLISH): S.CONNECTED,
    (S.PUBLISHING, T.MEDIA): S.PUBLISHING,
    (S.PUBLISHING, T.UNPUBLISH): S.CONNECTED,
    **{(s, T.PEER_CLOSED): S.CLOSED for s in _OPEN},
    **{(s, T.CLOSE): S.CLOSED for s in (*_OPEN, S.CLOSED)},
    **{(s, T.FAIL): S.ERROR for s in State},
}
del S, T

# Chunk streams we send on: 5.4 says protocol control messages go on chunk stream 2;
# the others are conventions (nginx-rtmp and SRS use 3 for results, 5 for onStatus).
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STATUS: Final = 5
# What we announce after connect (5.4.4 / 5.4.5): an acknowledgement every 5 MB (nginx-rtmp's
# ack_window default).
DEFAULT_WINDOW: Final = 5_000_000
# Our own outgoing chunk size (5.4.1); what we send is small, 4096 saves headers.
DEFAULT_OUT_CHUNK_SIZE: Final = 4096
SERVER_PROPERTIES: Final[dict[str, amf0.AMF0Value]] = {
    "fmsVer": "FMS/3,0,1,123",
    "capabilities": 31.0,
    "mode": 1.0,
}
_AGGREGATE_HEADER = struct.Struct(">B3s3sB3s")
_AGGREGATE_TYPES: Final = frozenset({MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0})

StateHook = Callable[[State, State, Trigger], None]


class RTMPConnection:
    """One server-side RTMP connection (see the module docstring)."""

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        window: int = DEFAULT_WINDOW,
        out_chunk_size: int = DEFAULT_OUT_CHUNK_SIZE,
        on_state_change: StateHook | None = None,
    ) -> None:
        self.limits = limits
        self.state = State.HANDSHAKE
        self._on_state_change = on_state_change
        self._handshake = ServerHandshake(random_bytes=random_bytes)
        self._handshake_buf = bytearray()
        self._reader = ChunkReader(limits)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._eof = False
        self._error: ProtocolError | None = None
        self._window = window
        self._out_chunk_size = out_chunk_size
        # Acknowledgements (5.4.3): bytes since the handshake, and the peer's window.
        self.bytes_received = 0
        self._acked = 0
        self._peer_window = 0  # 0: the peer asked for none
        # Streams (7.2.1.3 createStream): ids handed out, never reused on a connection.
        self._next_stream_id = 1
        self._streams: set[int] = set()
        self._connect_tid = 0.0
        self._publish: PublishRequested | None = None  # pending or active publish

    # --- state --------------------------------------------------------------------

    def _set_state(self, trigger: Trigger, what: str | None = None) -> None:
        """The one place the state changes; refuses anything :data:`TRANSITIONS` lacks."""
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise ProtocolError(f"{what or trigger.value} is not allowed while {self.state.value}")
        old, self.state = self.state, new
        if new is not old and self._on_state_change is not None:
            self._on_state_change(old, new, trigger)

    @property
    def publishing_stream(self) -> int | None:
        """The stream id being published, once accepted."""
        if self.state is State.PUBLISHING and self._publish is not None:
            return self._publish.stream_id
        return None

    # --- input --------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means it closed its side."""
        if self.state is State.ERROR:
            raise ProtocolError(f"connection already failed: {self._error}")
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data() after the end of the stream")
        if self.state in (State.HANDSHAKE, State.HANDSHAKE_ACK):
            self._handshake_buf += data
            if len(self._handshake_buf) > self.limits.max_buffered_bytes:
                self._fail(
                    ProtocolError(
                        f"handshake: {len(self._handshake_buf)} bytes buffered, over the "
                        f"{self.limits.max_buffered_bytes}-byte limit"
                    )
                )
            return
        if self.state is State.CLOSED:
            return  # a closed connection ignores what is still in flight
        self._feed_chunks(data)

    def _feed_chunks(self, data: bytes) -> None:
        try:
            self._reader.receive(data)
        except ProtocolError as exc:
            self._fail(exc)
        self.bytes_received += len(data)
        self._maybe_acknowledge()

    def _fail(self, exc: ProtocolError) -> None:
        self._error = exc
        self._set_state(Trigger.FAIL)
        raise exc

    def next_event(self) -> Event | NeedData:
        """The next event, or ``NEED_DATA``; raises :class:`ProtocolError` on bad input."""
        if self.state is State.ERROR:
            raise ProtocolError(f"connection already failed: {self._error}")
        try:
            return self._next_event()
        except ProtocolError as exc:
            self._error = exc
            self._set_state(Trigger.FAIL)
            raise

    def _next_event(self) -> Event | NeedData:
        if self._events:
            return self._events.popleft()
        if self.state is State.CLOSED:
            return Closed("connection closed")
        if self.state in (State.HANDSHAKE, State.HANDSHAKE_ACK):
            return self._handshake_step()
        while True:
            message = self._reader.next_message()
            if message is None:
                return self._need_data()
            event = self._dispatch(message)
            if event is not None:
                return event
            if self._events:
                return self._events.popleft()

    def _handshake_step(self) -> Event | NeedData:
        if self.state is State.HANDSHAKE:
            if self._handshake_buf:
                check_c0(self._handshake_buf[0])  # refuse a wrong version at once
            if len(self._handshake_buf) < 1 + HANDSHAKE_SIZE:
                return self._need_data()
            c0c1 = bytes(self._handshake_buf[: 1 + HANDSHAKE_SIZE])
            del self._handshake_buf[: 1 + HANDSHAKE_SIZE]
            self._out += self._handshake.respond(c0c1)
            self._set_state(Trigger.C0C1)
        if len(self._handshake_buf) < HANDSHAKE_SIZE:
            return self._need_data()
        verified = self._handshake.check_c2(bytes(self._handshake_buf[:HANDSHAKE_SIZE]))
        if not verified and self.limits.verify_c2:
            raise ProtocolError("handshake: C2 echoes neither S1 nor its digest (5.2.4)")
        rest = bytes(self._handshake_buf[HANDSHAKE_SIZE:])
        self._handshake_buf = bytearray()
        self._set_state(Trigger.C2)
        if rest:
            self._feed_chunks(rest)
        return HandshakeCompleted(self._handshake.digest_variant, verified)

    def _need_data(self) -> Event | NeedData:
        if self._eof:
            self._set_state(Trigger.PEER_CLOSED)
            return Closed()
        return NEED_DATA

    # --- messages -------------------------------------------------------------------

    def _dispatch(self, message: Message) -> Event | None:
        type_id = message.type_id
        if type_id in (MessageType.AUDIO, MessageType.VIDEO):
            self._check_publishing(message, "audio" if type_id == MessageType.AUDIO else "video")
            return MediaMessage(type_id, message.stream_id, message.timestamp, message.payload)
        if type_id in (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3):
            command = Command.parse(message.payload, amf3=type_id == MessageType.COMMAND_AMF3)
            return self._on_command(command, message.stream_id)
        if type_id in (MessageType.DATA_AMF0, MessageType.DATA_AMF3):
            data = DataMessage.parse(message.payload, amf3=type_id == MessageType.DATA_AMF3)
            return self._on_data(data, message)
        if type_id == MessageType.SET_CHUNK_SIZE:
            self._reader.set_chunk_size(SetChunkSize.parse(message.payload).size)
        elif type_id == MessageType.ABORT:
            self._reader.abort(Abort.parse(message.payload).csid)
        elif type_id == MessageType.ACKNOWLEDGEMENT:
            Acknowledgement.parse(message.payload)  # we send little; nothing to throttle
        elif type_id == MessageType.WINDOW_ACK_SIZE:
            self._peer_window = WindowAckSize.parse(message.payload).size
            self._maybe_acknowledge()
        elif type_id == MessageType.SET_PEER_BANDWIDTH:
            bandwidth = SetPeerBandwidth.parse(message.payload)
            # 5.4.5: answer with a Window Acknowledgement Size if it differs from ours.
            if bandwidth.size != self._window and bandwidth.limit_type != LimitType.DYNAMIC:
                self._window = bandwidth.size
                self._queue_control(WindowAckSize(bandwidth.size))
        elif type_id == MessageType.USER_CONTROL:
            control = UserControl.parse(message.payload)
            if control.event == UserControlEvent.PING_REQUEST:  # 7.1.7: answer at once
                self._queue_control(UserControl(UserControlEvent.PING_RESPONSE, control.value))
        elif type_id == MessageType.AGGREGATE:
            self._check_publishing(message, "aggregate")
            self._split_aggregate(message)
        # Shared objects (7.1.3) and types the spec does not define are dropped.
        return None

    def _check_publishing(self, message: Message, what: str) -> None:
        self._set_state(Trigger.MEDIA, f"{what} message on stream {message.stream_id}")
        if self._publish is None or message.stream_id != self._publish.stream_id:
            expected = self._publish.stream_id if self._publish else 0
            raise ProtocolError(
                f"{what} message on stream {message.stream_id}, but stream {expected} is "
                "the one publishing"
            )

    def _on_data(self, data: DataMessage, message: Message) -> Event | None:
        values = data.values
        if data.name == "@setDataFrame" and values and values[0] == "onMetaData":
            values = values[1:]
        elif data.name != "onMetaData":
            return None  # onTextData, onCuePoint…: nothing downstream wants them
        if self.publishing_stream != message.stream_id:
            return None  # metadata outside a publish is harmless; drop it
        body = values[0] if values else None
        if not isinstance(body, dict):
            return None
        return MetaData(message.stream_id, message.timestamp, dict(body))

    def _split_aggregate(self, message: Message) -> None:
        # 7.1.6: sub-messages in FLV tag layout: type, 3-byte size, 3+1-byte timestamp,
        # 3-byte stream id, body, 4-byte back pointer. Their timestamps are rebased on
        # the aggregate's own.
        payload = message.payload
        offset = 0
        first: int | None = None
        while offset < len(payload):
            if offset + 11 > len(payload):
                raise ProtocolError(f"aggregate: truncated sub-message header at offset {offset}")
            type_id, raw_size, raw_ts, ts_high, _ = _AGGREGATE_HEADER.unpack_from(payload, offset)
            size = int.from_bytes(raw_size, "big")
            timestamp = int.from_bytes(raw_ts, "big") | (ts_high << 24)
            end = offset + 11 + size
            if end + 4 > len(payload):
                raise ProtocolError(
                    f"aggregate: sub-message at offset {offset} declares {size} bytes, "
                    f"past the end ({len(payload) - offset - 11} left)"
                )
            if type_id not in _AGGREGATE_TYPES:
                raise ProtocolError(f"aggregate: sub-message of type {type_id} (7.1.6)")
            if first is None:
                first = timestamp
            sub = Message(
                type_id,
                message.stream_id,
                (message.timestamp + timestamp - first) & 0xFFFFFFFF,
                payload[offset + 11 : end],
            )
            event = self._dispatch(sub)
            if event is not None:
                self._events.append(event)
            offset = end + 4

    def _on_command(self, command: Command, stream_id: int) -> Event | None:
        name = command.name
        if name == "connect":
            return self._on_connect(command)
        if name == "createStream":
            return self._on_create_stream(command)
        if name in ("releaseStream", "FCPublish", "FCUnpublish"):
            self._on_fc_command(command)
        elif name == "publish":
            return self._on_publish(command, stream_id)
        elif name in ("deleteStream", "closeStream"):
            return self._on_delete(command, stream_id)
        elif name not in ("_result", "_error", "onStatus", "onBWDone", "onBWCheck"):
            # (those are answers to calls we never make, or courtesy calls)
            return self._on_unknown(command, stream_id)
        return None

    def _on_connect(self, command: Command) -> Event:
        self._set_state(Trigger.CONNECT, "connect")
        props = command.command_object
        if not isinstance(props, dict):
            raise ProtocolError("connect: the command object is not an object (7.2.1.1)")
        app = props.get("app")
        if not isinstance(app, str):
            raise ProtocolError("connect: no 'app' string in the command object (7.2.1.1)")
        self._connect_tid = command.transaction_id
        encoding = props.get("objectEncoding")
        return ConnectRequested(
            transaction_id=command.transaction_id,
            app=app,
            tc_url=_text(props.get("tcUrl")),
            flash_ver=_text(props.get("flashVer")),
            object_encoding=encoding if isinstance(encoding, float) else 0.0,
            properties=dict(props),
        )

    def _on_create_stream(self, command: Command) -> Event:
        self._set_state(Trigger.CREATE_STREAM, "createStream")
        if len(self._streams) >= self.limits.max_streams:
            raise ProtocolError(
                f"createStream: more than {self.limits.max_streams} streams on one connection"
            )
        # Real, increasing ids (pyrtmp answered 1 every time).
        new_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams.add(new_id)
        self._queue_command(Command("_result", command.transaction_id, None, (float(new_id),)))
        return StreamCreated(new_id)

    def _on_fc_command(self, command: Command) -> None:
        # releaseStream / FCPublish / FCUnpublish: Flash Media Encoder conventions that
        # OBS and ffmpeg still send; FMS answers _result and onFCPublish/onFCUnpublish.
        self._set_state(Trigger.STREAM_COMMAND, command.name)
        if command.transaction_id:
            self._queue_command(Command("_result", command.transaction_id, None))
        if command.name == "FCPublish":
            self._queue_command(
                Command("onFCPublish", 0.0, None, ({"code": "NetStream.Publish.Start"},))
            )
        elif command.name == "FCUnpublish":
            self._queue_command(
                Command("onFCUnpublish", 0.0, None, ({"code": "NetStream.Unpublish.Success"},))
            )

    def _on_unknown(self, command: Command, stream_id: int) -> Event:
        self._set_state(Trigger.CALL, f"command {command.name!r}")
        if command.transaction_id:
            description = f"{command.name}: not supported; this server only accepts publishing"
            info = _status("error", "NetConnection.Call.Failed", description)
            self._queue_command(Command("_error", command.transaction_id, None, (info,)), stream_id)
        return UnhandledCommand(command.name, stream_id, command.transaction_id)

    def _on_publish(self, command: Command, stream_id: int) -> Event:
        self._set_state(Trigger.PUBLISH, "publish")
        if stream_id not in self._streams:
            raise ProtocolError(
                f"publish on stream {stream_id}, which createStream did not allocate (7.2.2.6)"
            )
        args = command.arguments
        name = args[0] if args else None
        if not isinstance(name, str):
            raise ProtocolError("publish: no publishing name (7.2.2.6)")
        publish_type = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        self._publish = PublishRequested(stream_id, name, publish_type, command.transaction_id)
        return self._publish

    def _on_delete(self, command: Command, stream_id: int) -> Event | None:
        if command.name == "deleteStream":
            # 7.2.2.3: the stream id is the first argument after the null object.
            target = command.arguments[0] if command.arguments else None
            if not isinstance(target, float) or not target.is_integer():
                raise ProtocolError("deleteStream: no stream id (7.2.2.3)")
            stream_id = int(target)
        publishing = self.publishing_stream == stream_id
        if publishing:
            self._set_state(Trigger.UNPUBLISH, command.name)
            self._publish = None
        else:
            self._set_state(Trigger.STREAM_COMMAND, command.name)
        if stream_id not in self._streams:
            return None
        self._streams.discard(stream_id)
        return StreamDeleted(stream_id, publishing)

    # --- output ---------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer (housekeeping and answers); empties the queue."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _maybe_acknowledge(self) -> None:
        # 5.4.3: "The client or the server MUST send an acknowledgment to the peer after
        # receiving bytes equal to the window size." pyrtmp never did; some encoders
        # stall once a window of bytes goes unacknowledged.
        if self._peer_window and self.bytes_received - self._acked >= self._peer_window:
            self._acked = self.bytes_received
            if self.state not in (State.CLOSED, State.ERROR):
                self._queue_control(Acknowledgement(self.bytes_received))

    def _queue_control(
        self,
        control: SetChunkSize
        | Abort
        | Acknowledgement
        | WindowAckSize
        | SetPeerBandwidth
        | UserControl,
    ) -> None:
        # 5.4: protocol control messages use message stream id 0 and chunk stream 2.
        self._out += self._writer.write(CSID_CONTROL, control.type_id, 0, 0, bytes(control))

    def _queue_command(self, command: Command, stream_id: int = 0) -> None:
        csid = CSID_COMMAND if stream_id == 0 else CSID_STATUS
        self._out += self._writer.write(
            csid, MessageType.COMMAND_AMF0, stream_id, 0, bytes(command)
        )

    def accept_connect(self) -> bytes:
        """Window, bandwidth, chunk size, then ``_result`` NetConnection.Connect.Success."""
        self._set_state(Trigger.ACCEPT_CONNECT)
        self._queue_control(WindowAckSize(self._window))
        self._queue_control(SetPeerBandwidth(self._window, LimitType.DYNAMIC))
        self._queue_control(SetChunkSize(self._out_chunk_size))
        self._writer.chunk_size = self._out_chunk_size  # 5.4.1: from the next chunk on
        info = _status("status", "NetConnection.Connect.Success", "Connection succeeded.")
        info["objectEncoding"] = 0.0
        self._queue_command(Command("_result", self._connect_tid, dict(SERVER_PROPERTIES), (info,)))
        return self.data_to_send()

    def reject_connect(self, description: str) -> bytes:
        """``_error`` NetConnection.Connect.Rejected; the connection is closed after it."""
        self._set_state(Trigger.REJECT_CONNECT)
        info = _status("error", "NetConnection.Connect.Rejected", description)
        self._queue_command(Command("_error", self._connect_tid, None, (info,)))
        return self.data_to_send()

    def accept_publish(self) -> bytes:
        """StreamBegin (7.1.7), then onStatus NetStream.Publish.Start."""
        self._set_state(Trigger.ACCEPT_PUBLISH)
        assert self._publish is not None
        stream_id = self._publish.stream_id
        self._queue_control(UserControl(UserControlEvent.STREAM_BEGIN, stream_id))
        return self.send_status(
            stream_id, "status", "NetStream.Publish.Start", "Publishing started."
        )

    def reject_publish(self, code: str, description: str) -> bytes:
        """onStatus error (``NetStream.Publish.BadName``, ``…Rejected``); back to connected."""
        self._set_state(Trigger.REJECT_PUBLISH)
        assert self._publish is not None
        stream_id = self._publish.stream_id
        self._publish = None
        return self.send_status(stream_id, "error", code, description)

    def send_status(self, stream_id: int, level: str, code: str, description: str) -> bytes:
        """An onStatus command on ``stream_id`` (7.2.2: level, code, description)."""
        if self.state is State.ERROR:
            raise ProtocolError(f"connection already failed: {self._error}")
        self._queue_command(
            Command("onStatus", 0.0, None, (_status(level, code, description),)),
            stream_id,
        )
        return self.data_to_send()

    def close(self) -> bytes:
        """We are closing: nothing more is read; returns what is still queued."""
        if self.state is not State.ERROR:
            self._set_state(Trigger.CLOSE)
        return self.data_to_send()


def _status(level: str, code: str, description: str) -> dict[str, amf0.AMF0Value]:
    return {"level": level, "code": code, "description": description}


def _text(value: amf0.AMF0Value) -> str:
    return value if isinstance(value, str) else ""
