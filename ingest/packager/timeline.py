"""Publisher timestamps → a clean media timeline (milliseconds from the first frame).

RTMP timestamps are the publisher's word: they go backwards (encoder restarts, bad
muxers), jump (a 2^32 ms wrap, a reconnecting relay) or stall. fMP4 needs decode times
that only grow, so each track goes through a :class:`TrackClock`:

- the first sample of the session is time 0 for every track (A/V offsets kept);
- a small step back (≤ ``jump_ms``) is clamped to just after the previous sample;
- a big step back, or a step forward far larger than the wall-clock time that passed,
  re-bases the track so it continues one nominal frame after its previous sample;
- a forward gap that matches the wall clock (the publisher really stalled) is kept.

Each correction is logged (rate-limited); nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from structlog.stdlib import BoundLogger

# Beyond this a timestamp step is not jitter but a discontinuity.
DEFAULT_JUMP_MS = 1000
# At most one "clamped" log line per track per this many seconds (a broken publisher
# would otherwise log every frame).
CLAMP_LOG_INTERVAL_S = 10.0


@dataclass
class SessionBase:
    """The publisher timestamp that becomes media time 0 (shared by all tracks)."""

    origin_ms: int | None = None


@dataclass
class TrackClock:
    track: str
    base: SessionBase
    log: BoundLogger
    nominal_ms: int  # one frame, used when re-basing; updated from real deltas
    jump_ms: int = DEFAULT_JUMP_MS
    strictly_increasing: bool = True
    _offset_ms: int | None = None
    _last_ms: int | None = None
    _last_wall_s: float = 0.0
    _clamped: int = 0
    _last_clamp_log_s: float = field(default=-CLAMP_LOG_INTERVAL_S)

    @property
    def last_ms(self) -> int | None:
        return self._last_ms

    def map(self, dts_ms: int, wall_s: float) -> int:
        """The normalized decode time of a sample stamped ``dts_ms`` arriving at ``wall_s``."""
        if self.base.origin_ms is None:
            self.base.origin_ms = dts_ms
        if self._offset_ms is None:
            self._offset_ms = self.base.origin_ms
        t = dts_ms - self._offset_ms
        last = self._last_ms
        # A track starting just before the session origin starts at 0.
        t = max(t, 0) if last is None else self._correct(dts_ms, t, last, wall_s)
        if last is not None and 0 < t - last <= self.jump_ms:
            self.nominal_ms = t - last
        self._last_ms = t
        self._last_wall_s = wall_s
        return t

    def _correct(self, dts_ms: int, t: int, last: int, wall_s: float) -> int:
        step = t - last
        if step < -self.jump_ms or (
            step > self.jump_ms and step > (wall_s - self._last_wall_s) * 1000 + self.jump_ms
        ):
            rebased = last + self.nominal_ms
            self._offset_ms = dts_ms - rebased
            self.log.warning(
                "publisher timestamps jumped; re-based",
                track=self.track,
                step_ms=step,
                publisher_dts_ms=dts_ms,
                media_ms=rebased,
            )
            return rebased
        floor = last + 1 if self.strictly_increasing else last
        if t < floor:
            self._clamped += 1
            if wall_s - self._last_clamp_log_s >= CLAMP_LOG_INTERVAL_S:
                self._last_clamp_log_s = wall_s
                self.log.warning(
                    "publisher timestamps went backwards; clamped",
                    track=self.track,
                    step_ms=step,
                    clamped_total=self._clamped,
                )
            return floor
        return t
