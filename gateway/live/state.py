"""What a gateway knows about live streams: built from events alone, the same everywhere.

Every gateway process applies the same ``stream.*`` events (live from the bus, or
caught up from JetStream at start) to a :class:`LiveState`; the playlist it renders is
a pure function of that state, so two gateways that saw the same events serve the same
playlist whatever order the events arrived in (tests/integration/test_live_gateway.py).

Per stream, the current broadcast is a :class:`SessionPlaylist`: its segments and parts
in a sliding window. Removal follows RFC 8216bis §6.2.2: oldest first, never below three
target durations, with EXT-X-MEDIA-SEQUENCE counting the removed segments. Parts are
kept only for the last few target durations (the playlist lists no older ones), and a
publisher's reconnect marks its first segment as a discontinuity (§4.4.4.3), counted
by EXT-X-DISCONTINUITY-SEQUENCE once it leaves the window (§4.4.3.3). Waiters (the
blocking playlist reload, preload-hinted parts) are woken on every change of a stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events.catalog import StreamEnded, StreamPart, StreamSegment, StreamStarted
from events.envelope import Event
from gateway.live import keys

# Events for a session whose stream.started has not arrived yet (bounded).
MAX_ORPHAN_EVENTS = 256
# After stream.ended, the ENDLIST playlist stays served this long, then the stream is
# offline (RFC 8216bis §6.2.1: segments stay available for the playlist's duration).
DEFAULT_ENDED_GRACE_S = 120.0
# Parts are kept for segments ending within this many target durations of the live
# edge: the playlist lists three (playlist.py), and a blocking request may name a part
# of the segment just before those.
PART_KEEP_TARGETS = 4


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    duration_s: float
    uri: str
    independent: bool


@dataclass(frozen=True, slots=True)
class Segment:
    sequence: int
    duration_s: float
    uri: str
    independent: bool
    program_date_time: str
    part_count: int


@dataclass
class SessionPlaylist:
    stream_id: str
    session_id: str
    started_at: datetime
    target_duration: int  # EXT-X-TARGETDURATION, fixed for the session (§4.4.3.1)
    part_target_s: float
    window_s: float
    init_uri: str
    segments: dict[int, Segment] = field(default_factory=dict)
    parts: dict[int, dict[int, Part]] = field(default_factory=dict)
    trimmed_below: int = 0  # segments below this left the window (never come back)
    # Segments that start after a publisher reconnected (EXT-X-DISCONTINUITY).
    discontinuities: set[int] = field(default_factory=set)
    ended: bool = False
    ended_at_s: float = 0.0  # monotonic
    version: int = 0  # bumped on every change (the rendered playlist is cached by it)

    @classmethod
    def from_started(cls, event: StreamStarted, window_s: float) -> SessionPlaylist:
        # segment_target_s carries the longest a segment may be once rounded, i.e.
        # the target duration (ingest/packager/session.py).
        target = max(1, math.ceil(event.segment_target_s - 1e-9))
        return cls(
            stream_id=event.stream_id,
            session_id=event.session_id,
            started_at=event.occurred_at,
            target_duration=target,
            part_target_s=event.part_target_s,
            window_s=window_s,
            init_uri=keys.init_uri(event.session_id),
        )

    @property
    def floor(self) -> int:
        """The first sequence listed: EXT-X-MEDIA-SEQUENCE (§4.4.3.2)."""
        return min(self.segments, default=self.trimmed_below)

    @property
    def last_sequence(self) -> int:
        """The last complete segment (-1 before the first)."""
        return max(self.segments, default=-1)

    def listed_parts(self, sequence: int) -> list[Part]:
        """Parts 0, 1, … of a segment up to the first one missing."""
        found = self.parts.get(sequence, {})
        listed: list[Part] = []
        while (part := found.get(len(listed))) is not None:
            listed.append(part)
        return listed

    @property
    def discontinuity_sequence(self) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE: discontinuities that left the window (§4.4.3.3)."""
        return sum(1 for seq in self.discontinuities if seq < self.floor)

    def add_part(self, event: StreamPart) -> bool:
        if event.sequence < self.trimmed_below:
            return False  # already out of the window
        if event.discontinuity:
            self.discontinuities.add(event.sequence)
        parts = self.parts.setdefault(event.sequence, {})
        if event.part_index in parts:
            return False  # a redelivery
        parts[event.part_index] = Part(
            index=event.part_index,
            duration_s=event.duration_s,
            uri=keys.uri_of(self.stream_id, event.object_key),
            independent=event.independent,
        )
        return True

    def add_segment(self, event: StreamSegment) -> bool:
        if event.sequence < self.trimmed_below or event.sequence in self.segments:
            return False
        if event.discontinuity:
            self.discontinuities.add(event.sequence)
        self.segments[event.sequence] = Segment(
            sequence=event.sequence,
            duration_s=event.duration_s,
            uri=keys.uri_of(self.stream_id, event.object_key),
            independent=event.keyframe,
            program_date_time=event.program_date_time,
            part_count=event.part_count,
        )
        self._trim()
        return True

    def _trim(self) -> None:
        """Drop the oldest segments while the rest still covers the window (§6.2.2)."""
        keep_s = max(self.window_s, 3.0 * self.target_duration)
        ordered = sorted(self.segments)
        total = sum(self.segments[seq].duration_s for seq in ordered)
        for seq in ordered:
            if total - self.segments[seq].duration_s < keep_s:
                break
            total -= self.segments.pop(seq).duration_s
            self.trimmed_below = seq + 1
        # Parts only near the live edge: older ones are never listed again.
        keep_parts_s = PART_KEEP_TARGETS * self.target_duration
        covered_s, oldest_kept = 0.0, self.trimmed_below
        for seq in reversed(ordered):
            if seq not in self.segments or covered_s >= keep_parts_s:
                break
            covered_s += self.segments[seq].duration_s
            oldest_kept = seq
        for seq in [seq for seq in self.parts if seq < oldest_kept]:
            del self.parts[seq]


@dataclass
class _Stream:
    current: SessionPlaylist | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class LiveState:
    def __init__(self, *, window_s: float, ended_grace_s: float = DEFAULT_ENDED_GRACE_S) -> None:
        self.window_s = window_s
        self.ended_grace_s = ended_grace_s
        self._streams: dict[str, _Stream] = {}
        self._sessions: dict[str, SessionPlaylist] = {}
        self._orphans: dict[str, list[Event]] = {}
        self._known: set[str] = set()

    # -- reading -----------------------------------------------------------------------

    def knows(self, stream_id: str) -> bool:
        """Has this stream ever been live (within the history we read)?"""
        return stream_id in self._known

    def playlist(self, stream_id: str) -> SessionPlaylist | None:
        """The stream's current broadcast, while live or shortly after it ended."""
        stream = self._streams.get(stream_id)
        current = stream.current if stream else None
        if current is None or self._expired(current):
            return None
        return current

    def session(self, session_id: str) -> SessionPlaylist | None:
        return self._sessions.get(session_id)

    def live_sessions(self) -> list[SessionPlaylist]:
        return [s.current for s in self._streams.values() if s.current and not s.current.ended]

    async def wait_change(self, stream_id: str, timeout_s: float) -> bool:
        """Until the stream's state changes (True) or ``timeout_s`` passes (False)."""
        stream = self._streams.setdefault(stream_id, _Stream())
        try:
            await asyncio.wait_for(stream.changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # -- applying events ---------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Apply one event; True if a playlist changed. Order-tolerant and idempotent."""
        if isinstance(event, StreamStarted):
            return self._started(event)
        if not isinstance(event, StreamPart | StreamSegment | StreamEnded):
            return False
        session = self._sessions.get(event.session_id)
        if session is None:
            orphans = self._orphans.setdefault(event.session_id, [])
            if len(orphans) < MAX_ORPHAN_EVENTS:
                orphans.append(event)
            return False
        if isinstance(event, StreamPart):
            changed = session.add_part(event)
        elif isinstance(event, StreamSegment):
            changed = session.add_segment(event)
        else:
            changed = not session.ended
            session.ended = True
            # Caught up from history: the grace counts from when it really ended.
            age_s = (datetime.now(UTC) - event.occurred_at).total_seconds()
            session.ended_at_s = time.monotonic() - max(0.0, age_s)
        if changed:
            session.version += 1
            self._notify(session.stream_id)
        return changed

    def _started(self, event: StreamStarted) -> bool:
        if event.session_id in self._sessions:
            return False
        self._known.add(event.stream_id)
        stream = self._streams.setdefault(event.stream_id, _Stream())
        session = SessionPlaylist.from_started(event, self.window_s)
        self._sessions[event.session_id] = session
        if stream.current is None or stream.current.started_at <= event.occurred_at:
            if stream.current is not None and not stream.current.ended:
                # A new broadcast replaced one whose end we never saw.
                stream.current.ended = True
                stream.current.ended_at_s = time.monotonic()
            stream.current = session
        for orphan in self._orphans.pop(event.session_id, []):
            self.apply(orphan)
        self._notify(event.stream_id)
        return True

    def _notify(self, stream_id: str) -> None:
        stream = self._streams.setdefault(stream_id, _Stream())
        stream.changed.set()
        stream.changed = asyncio.Event()

    def _expired(self, session: SessionPlaylist) -> bool:
        return session.ended and time.monotonic() - session.ended_at_s > self.ended_grace_s

    def sweep(self) -> int:
        """Forget broadcasts that ended longer ago than the grace; returns how many."""
        gone = [sid for sid, s in self._sessions.items() if self._expired(s)]
        for session_id in gone:
            session = self._sessions.pop(session_id)
            stream = self._streams.get(session.stream_id)
            if stream is not None and stream.current is session:
                stream.current = None
        if len(self._orphans) > MAX_ORPHAN_EVENTS:
            self._orphans.clear()  # sessions whose start we will never see
        return len(gone)
