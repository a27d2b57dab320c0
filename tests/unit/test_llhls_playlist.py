"""LL-HLS playlist rendering: golden text, the part window, gaps, the end, and the rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from events.catalog import StreamEnded, StreamPart, StreamSegment, StreamStarted
from events.envelope import Event
from gateway.live.playlist import render
from gateway.live.state import LiveState, SessionPlaylist

pytestmark = pytest.mark.unit

T0 = datetime(2026, 5, 20, 14, 0, 0, tzinfo=UTC)
PART_S = 0.23333
PARTS_PER_SEGMENT = 5  # 4 x 0.23333 + 0.06667 = 1 s, as the packager cuts 30 fps / 1 s GOPs


def started(
    stream: str = "chan", session: str = "sess", part_target: float = 0.236, td: float = 2.0
) -> StreamStarted:
    return StreamStarted(
        stream_id=stream,
        session_id=session,
        user_id="u",
        video_codec="avc1.64001F",
        audio_codec="mp4a.40.2",
        width=1280,
        height=720,
        fps=30.0,
        init_key=f"live/{stream}/{session}/init.mp4",
        part_target_s=part_target,
        segment_target_s=td,
        occurred_at=T0,
    )


def part(seq: int, index: int, stream: str = "chan", session: str = "sess") -> StreamPart:
    last = index == PARTS_PER_SEGMENT - 1
    return StreamPart(
        stream_id=stream,
        session_id=session,
        sequence=seq,
        part_index=index,
        duration_s=0.06667 if last else PART_S,
        object_key=f"live/{stream}/{session}/part{seq}.{index}.m4s",
        byte_size=1000,
        independent=index == 0,
    )


def segment(seq: int, stream: str = "chan", session: str = "sess") -> StreamSegment:
    pdt = T0 + timedelta(seconds=seq)
    return StreamSegment(
        stream_id=stream,
        session_id=session,
        sequence=seq,
        duration_s=1.0,
        object_key=f"live/{stream}/{session}/seg{seq}.m4s",
        byte_size=5000,
        keyframe=True,
        part_count=PARTS_PER_SEGMENT,
        program_date_time=pdt.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    )


def broadcast(segments: int, extra_parts: int = 0, td: float = 2.0) -> list[Event]:
    events: list[Event] = [started(td=td)]
    for seq in range(segments):
        events += [part(seq, i) for i in range(PARTS_PER_SEGMENT)]
        events.append(segment(seq))
    events += [part(segments, i) for i in range(extra_parts)]
    return events


def state_of(events: list[Event], window_s: float = 30.0) -> SessionPlaylist:
    state = LiveState(window_s=window_s)
    for event in events:
        state.apply(event)
    playlist = state.playlist("chan")
    assert playlist is not None
    return playlist


GOLDEN = """\
#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.708
#EXT-X-PART-INF:PART-TARGET=0.236
#EXT-X-MAP:URI="sess/init.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-05-20T14:00:01.000Z
#EXTINF:1.00000,
sess/seg1.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-05-20T14:00:02.000Z
#EXT-X-PART:DURATION=0.23333,URI="sess/part2.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.23333,URI="sess/part2.1.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part2.2.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part2.3.m4s"
#EXT-X-PART:DURATION=0.06667,URI="sess/part2.4.m4s"
#EXTINF:1.00000,
sess/seg2.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-05-20T14:00:03.000Z
#EXT-X-PART:DURATION=0.23333,URI="sess/part3.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.23333,URI="sess/part3.1.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part3.2.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part3.3.m4s"
#EXT-X-PART:DURATION=0.06667,URI="sess/part3.4.m4s"
#EXTINF:1.00000,
sess/seg3.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-05-20T14:00:04.000Z
#EXT-X-PART:DURATION=0.23333,URI="sess/part4.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.23333,URI="sess/part4.1.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part4.2.m4s"
#EXT-X-PART:DURATION=0.23333,URI="sess/part4.3.m4s"
#EXT-X-PART:DURATION=0.06667,URI="sess/part4.4.m4s"
#EXTINF:1.00000,
sess/seg4.m4s
#EXT-X-PART:DURATION=0.23333,URI="sess/part5.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.23333,URI="sess/part5.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="sess/part5.2.m4s"
"""


def test_golden_playlist() -> None:
    # Five 1 s segments in a 4 s window, two parts of the sixth; TD 1 s: parts are
    # listed for segments ending in the last 3 s (5.467 - 3 = 2.467 s and later).
    assert render(state_of(broadcast(5, extra_parts=2, td=1.0), window_s=4.0)) == GOLDEN


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern} not in playlist"
    return match.group(1)


def validate_ll_hls(text: str) -> None:
    """The LL-HLS rules of NOTES.md / RFC 8216bis, checked on rendered text."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    tags = {line.split(":", 1)[0] for line in lines}
    assert int(_find(r"#EXT-X-VERSION:(\d+)", text)) >= 9
    target = int(_find(r"#EXT-X-TARGETDURATION:(\d+)", text))
    part_target = float(_find(r"PART-TARGET=([\d.]+)", text))
    hold_back = float(_find(r"PART-HOLD-BACK=([\d.]+)", text))
    assert "CAN-BLOCK-RELOAD=YES" in text
    assert hold_back >= 3 * part_target - 1e-9  # §4.4.3.8 SHOULD (MUST ≥ 2x)
    assert "#EXT-X-MAP" in tags
    # Walk the segments: EXTINF rounded ≤ TD; parts ≤ PART-TARGET, ≥ 85 % unless
    # INDEPENDENT or the last of their segment; PDT before the first part.
    pending: list[tuple[float, bool]] = []
    saw_pdt = False
    for line in lines:
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME"):
            assert not pending, "PROGRAM-DATE-TIME after a part of its segment (§4.4.4.9)"
            saw_pdt = True
        elif line.startswith("#EXT-X-PART:"):
            duration = float(_find(r"DURATION=([\d.]+)", line))
            pending.append((duration, "INDEPENDENT=YES" in line))
        elif line.startswith("#EXTINF:"):
            assert round(float(line[8:].rstrip(","))) <= target
            for duration, _ in pending:
                assert duration <= part_target
            for duration, independent in pending[:-1]:
                assert independent or duration >= 0.85 * part_target
            pending = []
    for duration, _ in pending:
        assert duration <= part_target
    assert saw_pdt
    if "#EXT-X-ENDLIST" in tags:
        assert "#EXT-X-PRELOAD-HINT" not in tags  # §4.4.5.3
    else:
        assert sum(line.startswith("#EXT-X-PRELOAD-HINT") for line in lines) == 1


def test_playlist_follows_the_ll_hls_rules() -> None:
    validate_ll_hls(render(state_of(broadcast(40, extra_parts=3))))


def test_parts_only_for_the_last_three_target_durations() -> None:
    text = render(state_of(broadcast(20, extra_parts=1)))
    with_parts = {int(m) for m in re.findall(r'URI="sess/part(\d+)\.', text)}
    # Playlist ends at 20.233 s; TD 2 → parts for segments ending after 14.233 s.
    assert with_parts == {14, 15, 16, 17, 18, 19, 20}
    # Older segments are still listed normally (a non-LL player plays them).
    assert "sess/seg0.m4s" in text


def test_window_keeps_three_target_durations_at_least() -> None:
    playlist = state_of(broadcast(20), window_s=1.0)
    assert playlist.floor == 14  # 6 x 1 s kept (§6.2.2: never below 3 x TD)
    assert "#EXT-X-MEDIA-SEQUENCE:14" in render(playlist)


def test_ended_broadcast_has_endlist_and_no_hint() -> None:
    events = broadcast(3)
    events.append(StreamEnded(stream_id="chan", session_id="sess", reason="publisher_left"))
    text = render(state_of(events))
    assert text.endswith("sess/seg2.m4s\n#EXT-X-ENDLIST\n")
    validate_ll_hls(text)


def test_a_segment_missing_from_the_store_is_a_gap() -> None:
    events = [e for e in broadcast(4) if not (isinstance(e, StreamSegment) and e.sequence == 2)]
    text = render(state_of(events))
    assert "#EXT-X-GAP\n#EXTINF:1.00000,\nsess/seg2.m4s\n" in text
    assert "#EXT-X-MEDIA-SEQUENCE:0" in text


def test_in_progress_parts_stop_at_the_first_missing_one() -> None:
    events = [*broadcast(1), part(1, 0), part(1, 2)]
    text = render(state_of(events))
    assert 'URI="sess/part1.0.m4s"' in text
    assert "part1.2" not in text.replace('PRELOAD-HINT:TYPE=PART,URI="sess/part1.1', "")


def test_any_event_order_renders_the_same() -> None:
    events = broadcast(10, extra_parts=3)
    shuffled = [events[0], *reversed(events[1:])]
    duplicated = events + events[5:20]
    reference = render(state_of(events))
    assert render(state_of(shuffled)) == reference
    assert render(state_of(duplicated)) == reference
