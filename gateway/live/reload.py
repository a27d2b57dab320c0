"""Blocking playlist reload: the ``_HLS_msn`` / ``_HLS_part`` rules (RFC 8216bis §6.2.5.2).

Pure functions over a :class:`~gateway.live.state.SessionPlaylist`; the route waits on
the state and asks again after every change.

- ``_HLS_msn=M`` alone: ready once segment M (or later) is complete.
- ``_HLS_msn=M&_HLS_part=N``: ready once part N of segment M (or anything later)
  exists; an index past the last part of a complete segment M means part 0 of M+1.
- ``_HLS_part`` without ``_HLS_msn`` → 400; M more than two past the last segment, or
  N further ahead than the Advance Part Limit → 400 at once.
- An ended playlist (EXT-X-ENDLIST) ignores both directives.
- Blocked longer than three target durations → 503 (the route's timeout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from gateway.live.state import SessionPlaylist

MAX_DIRECTIVE = 10**9  # bigger than any sequence a live stream reaches


class ReloadError(ValueError):
    """Bad directives: the route answers 400 with this message."""


class Verdict(Enum):
    READY = "ready"
    WAIT = "wait"
    TOO_FAR = "too_far"


@dataclass(frozen=True, slots=True)
class Directives:
    msn: int | None = None
    part: int | None = None

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def _integer(name: str, raw: str) -> int:
    # §6.2.5.2: both are decimal-integers.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > MAX_DIRECTIVE:
        raise ReloadError(f"{name} must be a decimal integer, got {raw[:20]!r}")
    return int(raw)


def parse_directives(msn: str | None, part: str | None) -> Directives:
    if part is not None and msn is None:
        # §6.2.5.2: "_HLS_part directive but no _HLS_msn directive … MUST return Bad Request".
        raise ReloadError("_HLS_part needs _HLS_msn")
    return Directives(
        msn=None if msn is None else _integer("_HLS_msn", msn),
        part=None if part is None else _integer("_HLS_part", part),
    )


def advance_part_limit(part_target_s: float) -> int:
    """§6.2.5.2: 3 / PART-TARGET when PART-TARGET < 1 s, else 3 (parts)."""
    if part_target_s <= 0:
        return 3
    return math.floor(3 / part_target_s) if part_target_s < 1 else 3


def _available(session: SessionPlaylist, msn: int, part: int | None) -> bool:
    last = session.last_sequence
    if msn < session.floor:
        return True  # long gone from the window: the current playlist is newer
    if part is None:
        return msn <= last
    # §6.2.5.2: a part index past the final part of segment M is part 0 of M+1.
    while msn <= last:
        segment = session.segments.get(msn)
        count = segment.part_count if segment else 0
        if part < count:
            return True
        msn, part = msn + 1, 0
    return msn == last + 1 and part < len(session.listed_parts(msn))


def verdict(session: SessionPlaylist, directives: Directives) -> Verdict:
    if not directives.blocking or session.ended:
        return Verdict.READY  # §6.2.5.2: ignored once the playlist has EXT-X-ENDLIST
    msn = directives.msn
    assert msn is not None
    part = directives.part
    last = session.last_sequence
    if msn > last + 2:
        return Verdict.TOO_FAR
    if part is not None:
        limit = advance_part_limit(session.part_target_s)
        if msn == last + 1 and part - len(session.listed_parts(msn)) + 1 > limit:
            return Verdict.TOO_FAR
        if msn == last + 2 and part + 1 > limit:
            return Verdict.TOO_FAR
    return Verdict.READY if _available(session, msn, part) else Verdict.WAIT
