"""One broadcast: what outlives a publisher's connection.

A channel's broadcast starts with a publish and usually ends with it. When the
connection drops without an unpublish (``"dropped"``, ``"timeout"``), the broadcast
lingers for the reconnect window: a publisher that comes back in time continues it —
same session id (so the same playlist, object keys and recording), media sequence
numbers and decode times carrying on (:class:`~ingest.packager.packager.Resume`).
:class:`Broadcast` holds that shared state; each connection has its own
:class:`~ingest.packager.session.SessionSink` and packager thread. A lingering
broadcast is also written to JetStream KV (:mod:`ingest.packager.handoff`), so a
reconnect that lands on another ingest process rebuilds it there and goes on; a live
one is kept current there too, so a crash of this process loses none of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from events.catalog import StreamStarted
from ingest.packager.recording import StoredSegment
from ingest.packager.retention import PartRetention

if TYPE_CHECKING:
    from ingest.packager.session import SessionSink

# Close reasons after which the publisher is expected back (ingest/media.py).
RESUMABLE: Final = frozenset({"dropped", "timeout"})


def ended_reason(reason: str) -> str:
    """``stream.ended``'s vocabulary: a drop nobody came back from is the publisher leaving."""
    return "publisher_left" if reason == "dropped" else reason


@dataclass(eq=False)
class Broadcast:
    stream_id: str
    session_id: str  # the first connection's: names every object of the broadcast
    user_id: str
    retention: PartRetention
    init: bytes | None = None  # the stored init segment; later connections reuse it
    started_event: StreamStarted | None = None  # init stored, event not yet acked
    started: bool = False
    stored_segments: int = 0
    segments: list[StoredSegment] = field(default_factory=list)  # for the VOD playlist
    duration_s: float = 0.0  # media time so far (from the newest finished connection)
    last_reason: str = ""
    connections: list[SessionSink] = field(default_factory=list)
    linger: asyncio.Task[None] | None = None  # waiting for the publisher to come back
    ending: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Wall clock at the first publish: a store object older than this is another
    # broadcast's (the live thumbnail, for the recording's poster).
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Our last write of the channel's shared record (ingest/packager/handoff.py); None
    # when there is no hand-off or the write failed.
    revision: int | None = None
    # Another process continues it: this one keeps no timer and ends nothing.
    handed_off: bool = False
    # While live here, a keeper task rewrites the shared record (after each stored
    # segment: ``segment_stored``; and on a heartbeat); every write of it by this
    # process holds ``shared_lock`` so a CAS never races our own.
    live_shared: bool = False
    segment_stored: asyncio.Event = field(default_factory=asyncio.Event)
    shared_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    keeper: asyncio.Task[None] | None = None
    shared_chunks: int = 0  # sealed chunks of ``segments`` in the bucket

    @property
    def newest(self) -> SessionSink | None:
        return self.connections[-1] if self.connections else None

    def resumable(self, window_s: float) -> bool:
        """Can a new publish of this channel continue this broadcast?"""
        newest = self.newest
        return (
            window_s > 0
            and not self.ending
            and not self.handed_off
            and newest is not None
            and newest.close_reason in RESUMABLE
        )
