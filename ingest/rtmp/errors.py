"""The one error the RTMP core raises.

Every byte sequence fed to :class:`ingest.rtmp.connection.RTMPConnection` either yields
events or raises :class:`ProtocolError` — nothing else (h11's invariant, fuzzed in
``tests/fuzz``). The FLV tag-body parsers in :mod:`ingest.flv` raise it too, so the
ingest session has one thing to catch for "the publisher sent something we refuse"::

    Exception
     └── ProtocolError   malformed bytes, a limit exceeded, or a message out of order;
                         the message says which, with the spec section behind the rule.
                         The connection is unusable afterwards: close it.
"""

from __future__ import annotations

__all__ = ["ProtocolError"]


class ProtocolError(Exception):
    """The peer broke the protocol (or one of our limits); close the connection."""
