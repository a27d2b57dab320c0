"""A sans-IO RTMP server core (RTMP spec 1.0) and the asyncio transport around it.

Modules: :mod:`~ingest.rtmp.handshake` (5.2), :mod:`~ingest.rtmp.chunks` (5.3),
:mod:`~ingest.rtmp.messages` (5.4, 6, 7.1), :mod:`~ingest.rtmp.amf0`,
:mod:`~ingest.rtmp.connection` (the state machine and its one table),
:mod:`~ingest.rtmp.limits` (bytes), :mod:`~ingest.rtmp.server` (sockets and time).
"""

from __future__ import annotations

from ingest.rtmp.connection import RTMPConnection, State
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
from ingest.rtmp.limits import Limits

__all__ = [
    "NEED_DATA",
    "Closed",
    "ConnectRequested",
    "Event",
    "HandshakeCompleted",
    "Limits",
    "MediaMessage",
    "MetaData",
    "NeedData",
    "ProtocolError",
    "PublishRequested",
    "RTMPConnection",
    "State",
    "StreamCreated",
    "StreamDeleted",
    "UnhandledCommand",
]
