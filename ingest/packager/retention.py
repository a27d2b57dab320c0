"""Which LL-HLS parts may leave the store: those no playlist lists any more.

The gateway lists parts only for the segments ending in the last three target
durations (RFC 8216bis §6.2.2; ``gateway/live/playlist.py``); a player that loaded
the playlist a moment ago may still ask for what it listed then, so parts are kept
for :data:`GRACE_TARGETS` more target durations. Segments stay: they are the
recording. Pure bookkeeping; the session deletes what :meth:`PartRetention.add_segment`
returns.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

LISTED_TARGETS = 3  # gateway/live/playlist.py PART_WINDOW_TARGETS
GRACE_TARGETS = 2  # a playlist fetched just before a trim, plus its PART-HOLD-BACK


@dataclass
class PartRetention:
    target_duration_s: float
    # (media end of the segment, its sequence, how many parts it had), oldest first.
    _segments: deque[tuple[float, int, int]] = field(default_factory=deque)
    _end_s: float = 0.0

    @property
    def keep_s(self) -> float:
        return (LISTED_TARGETS + GRACE_TARGETS) * self.target_duration_s

    def add_segment(
        self, sequence: int, duration_s: float, part_count: int
    ) -> list[tuple[int, int]]:
        """Note a closed segment; the (sequence, part index) pairs that may go now."""
        self._end_s += duration_s
        self._segments.append((self._end_s, sequence, part_count))
        expired: list[tuple[int, int]] = []
        while self._segments and self._segments[0][0] < self._end_s - self.keep_s:
            _, old, count = self._segments.popleft()
            expired += [(old, index) for index in range(count)]
        return expired

    def remaining(self) -> list[tuple[int, int]]:
        """Every (sequence, part index) not yet returned by :meth:`add_segment`."""
        return [(seq, index) for _, seq, count in self._segments for index in range(count)]
