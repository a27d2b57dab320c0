"""Where parts and segments end: the LL-HLS cutting rules as a sans-IO state machine.

The cutter sees the *driving* track only (video when there is video, else audio), in
that track's timescale. For each sample the packager calls :meth:`Cutter.before`
(cuts that end *before* this sample) then, once the sample is in the open part,
:meth:`Cutter.after` (cuts that end *with* it). Each returns the closes, in order.

Rules, with their sources:

- A part never lasts longer than PART-TARGET (RFC 8216bis §4.4.4.9, "MUST be less
  than or equal to the Part Target Duration"). A part is closed right after the
  sample whose estimated end leaves no room for one more frame, so the part is
  published the moment its last frame is in; its last sample lasts the frame estimate.
- Parts are contiguous: the next part starts where the previous one ended (the
  packager moves its first frame's decode time there and keeps its presentation time
  through the composition offset). Apple's HLS Authoring Specification: "the track
  fragment decode time MUST be consistent with the decode time and duration of the
  previous segment"; and EXTINF sums then match the media exactly.
- A part lasts at least 85 % of PART-TARGET unless it is the last of its segment or
  starts with an independent frame (§4.4.4.9). :func:`choose_part_target` snaps the
  declared PART-TARGET to whole frames so full parts are always ≥ 85 %.
- Segments start on keyframes, so any segment is a join point (Apple HLS Authoring
  Specification: each video segment starts with an IDR frame; RFC 8216bis
  §4.4.2.1 EXT-X-INDEPENDENT-SEGMENTS): at a keyframe, the open segment ends once it
  is at least ``segment_min`` long, so segments follow the publisher's GOP.
- EXT-X-TARGETDURATION never changes and every segment's duration, rounded, must not
  exceed it (§4.4.3.1). A GOP longer than that forces a cut on a part boundary; the
  next segment then does not start with a keyframe (``independent`` False), and the
  next keyframe closes it early to get back in step.
- A mid-segment keyframe starts a new (INDEPENDENT) part when the open part is already
  ≥ 85 % of the target, so players can join there (§4.4.4.9 INDEPENDENT SHOULD).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_PART_FRACTION = 0.85  # RFC 8216bis §4.4.4.9
# Timestamps arrive in whole milliseconds: a 29.97 fps part of 9 frames spans 300 or
# 301 ms. The declared PART-TARGET leaves this much room above whole frames.
JITTER_ALLOWANCE_S = 0.002
# Contiguity (the next part starts where the last ended) pulls a part's first frame
# earlier by at most this much; a longer hole in the input is a real gap and kept.
MAX_PULL_S = 0.1
# A keyframe ends the segment once it is this fraction of the segment target long: a
# 1.0 s GOP at 29.97 fps (1.001 s) or a 0.95 s GOP both cut on every keyframe.
SEGMENT_MIN_FRACTION = 0.9


def choose_part_target(configured_s: float, frame_s: float) -> float:
    """The PART-TARGET to declare: whole frames plus jitter room, at most ``configured_s``.

    Rounded up to the millisecond (the playlist prints milliseconds).
    """
    if frame_s <= 0:
        return configured_s
    frames = max(1, math.floor((configured_s - JITTER_ALLOWANCE_S) / frame_s + 1e-9))
    target = min(configured_s, frames * frame_s + JITTER_ALLOWANCE_S)
    return math.ceil(target * 1000 - 1e-6) / 1000


@dataclass(frozen=True, slots=True)
class CutterConfig:
    timescale: int
    part_target: int  # ticks; parts never exceed it
    segment_min: int  # ticks; a keyframe ends a segment at least this long
    segment_cap: int  # ticks; no segment may reach it (TARGETDURATION + 0.5 s rounding)
    all_sync: bool = False  # audio-only: every sample is a sync sample
    max_pull: int = 0  # ticks a part's start may precede its first sample (MAX_PULL_S)

    @classmethod
    def from_seconds(
        cls,
        timescale: int,
        *,
        part_target_s: float,
        segment_target_s: float,
        target_duration_s: int,
        all_sync: bool = False,
    ) -> CutterConfig:
        return cls(
            timescale=timescale,
            part_target=math.floor(part_target_s * timescale + 1e-6),
            segment_min=round(segment_target_s * SEGMENT_MIN_FRACTION * timescale),
            # §4.4.3.1 rounds EXTINF to the nearest integer: stay under TD + 0.5 s.
            segment_cap=round((target_duration_s + 0.5) * timescale) - 1,
            all_sync=all_sync,
            max_pull=round(MAX_PULL_S * timescale),
        )


@dataclass(frozen=True, slots=True)
class PartClosed:
    sequence: int  # the segment's media sequence number
    index: int  # part index within the segment
    start: int
    end: int
    independent: bool

    @property
    def duration(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class SegmentClosed:
    sequence: int
    start: int
    end: int
    independent: bool
    part_count: int

    @property
    def duration(self) -> int:
        return self.end - self.start


Cut = PartClosed | SegmentClosed


@dataclass
class _Open:
    start: int
    independent: bool


class Cutter:
    def __init__(
        self, config: CutterConfig, first_sequence: int = 0, start: int | None = None
    ) -> None:
        """``first_sequence``/``start``: where the media timeline begins (> 0 when a
        reconnect continues a broadcast); a first sample within ``max_pull`` after
        ``start`` opens the first part at ``start``, so durations add up from there."""
        self.config = config
        self._min_part = math.ceil(config.part_target * MIN_PART_FRACTION)
        self._sequence = first_sequence
        self._segment: _Open | None = None
        self._part: _Open | None = None
        self._parts_in_segment = 0
        self._segment_end = 0  # end of the last part closed in the open segment
        self._next_start: int | None = start  # where the next part starts (the last end)

    @property
    def sequence(self) -> int:
        return self._sequence

    @property
    def part_open(self) -> bool:
        return self._part is not None

    def before(self, t: int, sync: bool) -> list[Cut]:
        """Cuts that end before a sample at ``t`` joins the open part."""
        cuts: list[Cut] = []
        part = self._part
        if part is not None:
            if t >= part.start + self.config.part_target:
                # The sample cannot fit (a gap in the input): the part ends at the target.
                cuts += self._close_part(part.start + self.config.part_target)
            elif sync and not self.config.all_sync:
                if self._segment_due(t):
                    cuts += self._close_part(t)
                elif t - part.start >= self._min_part:
                    cuts += self._close_part(t)  # the keyframe starts an INDEPENDENT part
        if (
            self._part is None
            and self._segment is not None
            and sync
            and not self.config.all_sync
            and self._segment_due(t)
        ):
            cuts += self._close_segment()
        start = self._start_for(t)
        if self._segment is None:
            self._segment = _Open(start, sync)
            self._segment_end = start
        if self._part is None:
            self._part = _Open(start, sync)
            self._segment.start = min(self._segment.start, start)
        return cuts

    def _start_for(self, t: int) -> int:
        """Where a part opened by a sample at ``t`` starts: the last part's end, unless the
        sample came earlier than that estimate or after a real gap (then ``t`` itself)."""
        last_end = self._next_start
        if last_end is None or not 0 <= t - last_end <= self.config.max_pull:
            return t
        return last_end

    def after(self, t: int, estimate: int) -> list[Cut]:
        """Cuts that end with the sample at ``t`` (estimated to last ``estimate`` ticks)."""
        part = self._part
        assert part is not None, "after() without before()"
        end = t + estimate
        if end + estimate - part.start <= self.config.part_target:
            return []  # one more frame still fits
        return self._close_part(min(end, part.start + self.config.part_target))

    def finish(self, end: int) -> list[Cut]:
        """Close whatever is open at the end of the stream (``end``: after the last sample)."""
        cuts: list[Cut] = []
        if self._part is not None:
            start = self._part.start
            part_end = min(max(end, start + 1), start + self.config.part_target)
            cuts += self._close_part(part_end, check_cap=False)
        if self._segment is not None and self._parts_in_segment:
            cuts += self._close_segment()
        self._segment = None
        return cuts

    def _segment_due(self, t: int) -> bool:
        segment = self._segment
        assert segment is not None
        return t - segment.start >= self.config.segment_min or not segment.independent

    def _close_part(self, end: int, *, check_cap: bool = True) -> list[Cut]:
        part, segment = self._part, self._segment
        assert part is not None
        assert segment is not None
        self._part = None
        cuts: list[Cut] = [
            PartClosed(self._sequence, self._parts_in_segment, part.start, end, part.independent)
        ]
        self._parts_in_segment += 1
        self._segment_end = end
        self._next_start = end
        if not check_cap:
            return cuts
        length = end - segment.start
        if self.config.all_sync and length >= self.config.segment_min:
            cuts += self._close_segment()
        elif length + self.config.part_target > self.config.segment_cap:
            # No keyframe in time: cut here so the segment still rounds to ≤ TD (§4.4.3.1).
            cuts += self._close_segment()
        return cuts

    def _close_segment(self) -> list[Cut]:
        segment = self._segment
        assert segment is not None
        assert self._part is None
        closed = SegmentClosed(
            self._sequence,
            segment.start,
            self._segment_end,
            segment.independent,
            self._parts_in_segment,
        )
        self._segment = None
        self._sequence += 1
        self._parts_in_segment = 0
        return [closed]
