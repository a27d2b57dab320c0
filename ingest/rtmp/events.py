"""What :meth:`RTMPConnection.next_event` returns: one frozen dataclass per happening.

``NEED_DATA`` (the only instance of :class:`NeedData`) means "feed me more bytes".
Events that ask the application to decide — :class:`ConnectRequested`,
:class:`PublishRequested` — are answered with the connection's ``accept_*`` /
``reject_*`` methods; the rest are information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ingest.rtmp.amf0 import AMF0Value
from ingest.rtmp.messages import MessageType

__all__ = [
    "NEED_DATA",
    "Closed",
    "ConnectRequested",
    "Event",
    "HandshakeCompleted",
    "MediaMessage",
    "MetaData",
    "NeedData",
    "PublishRequested",
    "StreamCreated",
    "StreamDeleted",
    "UnhandledCommand",
]


class NeedData:
    """Sentinel type: no complete event is buffered."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    digest: bool  # the client used the Flash digest variant
    c2_verified: bool  # C2 echoed S1 or answered its digest (5.2.4)


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """7.2.1.1 connect: answer with ``accept_connect()`` or ``reject_connect()``."""

    transaction_id: float
    app: str
    tc_url: str = ""
    flash_ver: str = ""
    object_encoding: float = 0.0
    properties: dict[str, AMF0Value] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamCreated:
    """7.2.1.3 createStream: already answered with the new id."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """7.2.2.6 publish: answer with ``accept_publish()`` or ``reject_publish()``.

    ``name`` is what the publisher typed as stream key: a secret, never logged.
    """

    stream_id: int
    name: str
    publish_type: str  # "live", "record" or "append"
    transaction_id: float = 0.0


@dataclass(frozen=True, slots=True)
class MetaData:
    """``@setDataFrame onMetaData`` (7.1.2) on the publishing stream."""

    stream_id: int
    timestamp: int
    values: dict[str, AMF0Value]


@dataclass(frozen=True, slots=True)
class MediaMessage:
    """An audio (7.1.4) or video (7.1.5) message: one FLV tag body."""

    type_id: int
    stream_id: int
    timestamp: int  # milliseconds modulo 2^32, as on the wire
    payload: bytes

    @property
    def is_video(self) -> bool:
        return self.type_id == MessageType.VIDEO


@dataclass(frozen=True, slots=True)
class StreamDeleted:
    """7.2.2.3 deleteStream (or closeStream): publishing on it, if any, has ended."""

    stream_id: int
    was_publishing: bool


@dataclass(frozen=True, slots=True)
class UnhandledCommand:
    """A command this server does not implement (play, _checkbw…); answered with _error."""

    name: str
    stream_id: int
    transaction_id: float


@dataclass(frozen=True, slots=True)
class Closed:
    """The peer closed its side (``receive_data(b"")``), or we closed the connection."""

    reason: str = "peer closed the connection"


Event: TypeAlias = (
    HandshakeCompleted
    | ConnectRequested
    | StreamCreated
    | PublishRequested
    | MetaData
    | MediaMessage
    | StreamDeleted
    | UnhandledCommand
    | Closed
)
