"""Part and segment cutting rules (RFC 8216bis §4.4.3.1, §4.4.4.9; Apple HLS authoring)."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from ingest.packager.cutter import (
    Cut,
    Cutter,
    CutterConfig,
    PartClosed,
    SegmentClosed,
    choose_part_target,
)

pytestmark = pytest.mark.unit

TIMESCALE = 90_000


def frames(
    seconds: float, fps: float, gop: int, *, jitter_ms: bool = True
) -> list[tuple[int, bool]]:
    """(dts in 90 kHz ticks, keyframe) as RTMP delivers them: whole milliseconds."""
    out = []
    for n in range(round(seconds * fps)):
        ms = int(n * 1000 / fps) if jitter_ms else n * 1000 / fps
        out.append((round(ms * 90), n % gop == 0))
    return out


def run(cutter: Cutter, samples: list[tuple[int, bool]]) -> list[Cut]:
    cuts: list[Cut] = []
    deltas: deque[int] = deque(maxlen=8)
    last = None
    for t, sync in samples:
        if last is not None:
            deltas.append(t - last)
        last = t
        estimate = min(deltas) if deltas else 3000
        cuts += cutter.before(t, sync)
        cuts += cutter.after(t, estimate)
    assert last is not None
    cuts += cutter.finish(last + (min(deltas) if deltas else 3000))
    return cuts


def config(part_s: float, fps: float, segment_s: float = 1.0, td: int = 2) -> CutterConfig:
    return CutterConfig.from_seconds(
        TIMESCALE,
        part_target_s=choose_part_target(part_s, 1 / fps),
        segment_target_s=segment_s,
        target_duration_s=td,
    )


def check_rules(cuts: list[Cut], cfg: CutterConfig, td: int) -> None:
    parts = [c for c in cuts if isinstance(c, PartClosed)]
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    # Contiguous, in order, except across a real hole in the input.
    for before, after in itertools.pairwise(parts):
        assert after.start == before.end or after.start - before.end > cfg.max_pull
    # §4.4.4.9: every part ≤ PART-TARGET; ≥ 85 % unless independent or last of segment.
    last_parts = {(s.sequence, s.part_count - 1) for s in segments}
    for part in parts:
        assert 0 < part.duration <= cfg.part_target
        if not part.independent and (part.sequence, part.index) not in last_parts:
            assert part.duration >= 0.85 * cfg.part_target, part
    # §4.4.3.1: EXTINF rounded ≤ TARGETDURATION; parts add up to their segment.
    for segment in segments:
        assert round(segment.duration / TIMESCALE) <= td
        mine = [p for p in parts if p.sequence == segment.sequence]
        assert len(mine) == segment.part_count
        assert sum(p.duration for p in mine) == segment.duration
        assert [p.index for p in mine] == list(range(segment.part_count))


@pytest.mark.parametrize(
    ("configured", "fps", "declared"),
    [
        (0.25, 30, 0.236),  # 7 frames + 2 ms
        (0.25, 25, 0.242),  # 6 frames
        (0.25, 60, 0.236),  # 14 frames
        (0.25, 30000 / 1001, 0.236),
        (0.333, 30, 0.302),  # 9 frames: 10 would be 0.3333 > 0.333
        (0.34, 30, 0.336),  # 10 frames fit with room for jitter
        (0.2, 15, 0.136),  # 3 frames = 0.2 exactly leaves no room for jitter: 2
    ],
)
def test_declared_part_target_is_whole_frames(
    configured: float, fps: float, declared: float
) -> None:
    assert choose_part_target(configured, 1 / fps) == pytest.approx(declared)


@pytest.mark.parametrize("fps", [30, 25, 60, 30000 / 1001, 24])
def test_one_second_gop_gives_one_second_segments(fps: float) -> None:
    gop = round(fps)
    cfg = config(0.25, fps)
    cuts = run(Cutter(cfg), frames(6, fps, gop))
    check_rules(cuts, cfg, td=2)
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    assert len(segments) == 6
    assert all(s.independent for s in segments)
    for segment in segments[:-1]:
        assert segment.duration / TIMESCALE == pytest.approx(gop / fps, abs=0.0015)


def test_parts_close_with_their_last_frame() -> None:
    """A part is cut right after its last frame, not when the next one arrives."""
    cutter = Cutter(config(0.25, 30))
    closes_at = []
    for n, (t, sync) in enumerate(frames(1, 30, 30)):
        cutter.before(t, sync)
        if cutter.after(t, 2970):
            closes_at.append(n)
    assert closes_at[:3] == [6, 13, 20]  # 7 frames each, cut on the 7th


def test_gop_longer_than_segment_target_follows_the_gop() -> None:
    cfg = config(0.25, 30, segment_s=1.0, td=2)
    cuts = run(Cutter(cfg), frames(8, 30, gop=60))
    check_rules(cuts, cfg, td=2)
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    assert [round(s.duration / TIMESCALE, 2) for s in segments] == [2.0, 2.0, 2.0, 2.0]
    assert all(s.independent for s in segments)


def test_short_gop_is_grouped_up_to_the_target() -> None:
    cfg = config(0.25, 30, segment_s=1.0)
    cuts = run(Cutter(cfg), frames(4, 30, gop=15))
    check_rules(cuts, cfg, td=2)
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    assert [round(s.duration / TIMESCALE, 2) for s in segments] == [1.0, 1.0, 1.0, 1.0]


def test_mid_segment_keyframe_starts_an_independent_part_when_allowed() -> None:
    # 60 fps, 14-frame parts, keyframes every 27 frames: the part before the keyframe at
    # frame 27 already has 13 frames (≥ 85 %), so the keyframe opens a new part.
    fps = 60
    cfg = config(0.25, fps, segment_s=1.0)
    samples = frames(2, fps, gop=27)
    cuts = run(Cutter(cfg), samples)
    check_rules(cuts, cfg, td=2)
    keyframes = {t for t, sync in samples if sync}
    parts = [c for c in cuts if isinstance(c, PartClosed)]
    assert all(p.independent == (p.start in keyframes) for p in parts)
    mid_segment = [p for p in parts if p.independent and p.index > 0]
    assert mid_segment, "no INDEPENDENT part inside a segment"


def test_gop_longer_than_target_duration_forces_cuts_then_resyncs() -> None:
    """OBS 'auto' keyframes (8 s): segments still round to ≤ TD; keyframes re-align them."""
    cfg = config(0.25, 30, segment_s=1.0, td=2)
    cuts = run(Cutter(cfg), frames(16, 30, gop=240))
    check_rules(cuts, cfg, td=2)
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    assert all(s.duration < 2.5 * TIMESCALE for s in segments)
    starts = [s.start for s in segments]
    # The keyframe at 8 s starts a segment again.
    keyframe_8s = 8000 * 90
    assert keyframe_8s in starts
    assert segments[starts.index(keyframe_8s)].independent
    assert not all(s.independent for s in segments)


def test_input_gap_never_stretches_a_part() -> None:
    cfg = config(0.25, 30)
    samples = [s for s in frames(4, 30, 30) if not 1500 * 90 < s[0] < 2000 * 90]
    cuts = run(Cutter(cfg), samples)
    check_rules(cuts, cfg, td=2)


def test_audio_only_segments_on_part_boundaries() -> None:
    rate = 48_000
    target = choose_part_target(0.25, 1024 / rate)
    cfg = CutterConfig.from_seconds(
        rate, part_target_s=target, segment_target_s=1.0, target_duration_s=2, all_sync=True
    )
    cutter = Cutter(cfg)
    cuts: list[Cut] = []
    for n in range(48 * 5):
        cuts += cutter.before(n * 1024, True)
        cuts += cutter.after(n * 1024, 1024)
    cuts += cutter.finish(48 * 5 * 1024)
    parts = [c for c in cuts if isinstance(c, PartClosed)]
    segments = [c for c in cuts if isinstance(c, SegmentClosed)]
    assert all(p.duration == 11 * 1024 for p in parts[:-1])  # 11 AAC frames ≤ 0.237 s
    assert all(s.part_count == 4 for s in segments[:-1])  # 0.939 s ≥ 0.9 x 1.0 s
    assert sum(s.duration for s in segments) == 48 * 5 * 1024


def test_finish_closes_the_open_part_and_segment() -> None:
    cutter = Cutter(config(0.25, 30))
    cutter.before(0, True)
    cutter.after(0, 3000)
    cuts = cutter.finish(3000)
    assert cuts == [
        PartClosed(0, 0, 0, 3000, True),
        SegmentClosed(0, 0, 3000, True, 1),
    ]
