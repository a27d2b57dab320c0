"""Blocking playlist reload rules (RFC 8216bis §6.2.5.2)."""

from __future__ import annotations

import pytest

from events.catalog import StreamEnded
from gateway.live.reload import (
    Directives,
    ReloadError,
    Verdict,
    advance_part_limit,
    parse_directives,
    verdict,
)
from gateway.live.state import SessionPlaylist
from tests.unit.test_llhls_playlist import broadcast, part, state_of

pytestmark = pytest.mark.unit


def test_part_without_msn_is_a_bad_request() -> None:
    with pytest.raises(ReloadError, match="_HLS_part needs _HLS_msn"):
        parse_directives(None, "2")


@pytest.mark.parametrize("raw", ["-1", "1.5", "abc", "", "٣", "99999999999"])
def test_directives_are_decimal_integers(raw: str) -> None:
    with pytest.raises(ReloadError, match="decimal integer"):
        parse_directives(raw, None)


def test_advance_part_limit() -> None:
    assert advance_part_limit(0.236) == 12  # 3 / 0.236
    assert advance_part_limit(1.0) == 3
    assert advance_part_limit(2.0) == 3


@pytest.fixture
def live() -> SessionPlaylist:
    # Segments 0..3 complete (5 parts each), parts 0 and 1 of segment 4.
    return state_of(broadcast(4, extra_parts=2))


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (None, None, Verdict.READY),  # not a blocking request
        (3, None, Verdict.READY),  # last complete segment
        (4, None, Verdict.WAIT),  # in progress: not a complete segment yet
        (5, None, Verdict.WAIT),  # last + 2 may block
        (6, None, Verdict.TOO_FAR),  # last + 3: 400
        (4, 1, Verdict.READY),
        (4, 2, Verdict.WAIT),  # the next part: hold until it exists
        (3, 4, Verdict.READY),
        (3, 5, Verdict.READY),  # past seg 3's last part = part 0 of seg 4, which exists
        (3, 99, Verdict.READY),
        (4, 13, Verdict.WAIT),  # 12 parts ahead of part 1: within the limit
        (4, 14, Verdict.TOO_FAR),  # 13 ahead: past the Advance Part Limit
        (5, 11, Verdict.WAIT),
        (5, 12, Verdict.TOO_FAR),
        (0, 0, Verdict.READY),
    ],
)
def test_verdicts(
    live: SessionPlaylist, msn: int | None, part: int | None, expected: Verdict
) -> None:
    assert verdict(live, Directives(msn, part)) is expected


def test_past_the_last_part_waits_for_the_next_segment() -> None:
    playlist = state_of(broadcast(4))  # seg 3 complete, nothing of seg 4 yet
    assert verdict(playlist, Directives(3, 5)) is Verdict.WAIT
    playlist.add_part(part(4, 0))
    assert verdict(playlist, Directives(3, 5)) is Verdict.READY


def test_ended_playlist_ignores_the_directives() -> None:
    events = broadcast(2)
    events.append(StreamEnded(stream_id="chan", session_id="sess", reason="publisher_left"))
    assert verdict(state_of(events), Directives(9, 3)) is Verdict.READY
