"""Range header decisions (gateway/vod/ranges.py), RFC 9110 §14."""

from __future__ import annotations

import pytest

from gateway.vod.ranges import MAX_HEADER, WHOLE, ByteRange, Unsatisfiable, parse_range

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the file: all of it
        ("bytes=900-5000", ByteRange(900, 999)),  # an end past the file is clamped
        ("BYTES = 10 - 19", ByteRange(10, 19)),
        ("bytes=999-", ByteRange(999, 999)),
    ],
)
def test_satisfiable_single_ranges(header: str, expected: ByteRange) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    decision = parse_range(header, 1000)
    assert decision == Unsatisfiable(1000)
    assert isinstance(decision, Unsatisfiable)
    assert decision.content_range == "bytes */1000"


def test_any_range_of_an_empty_file_is_unsatisfiable() -> None:
    assert parse_range("bytes=0-", 0) == Unsatisfiable(0)
    assert parse_range("bytes=-1", 0) == Unsatisfiable(0)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",  # multi-range: served whole
        "items=0-1",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=5-1",  # last < first: invalid, ignored
        "bytes 0-1",
        "bytes=0-1" + " " * MAX_HEADER,
    ],
)
def test_ignored_headers_mean_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 1000) is WHOLE


def test_content_range_header() -> None:
    assert ByteRange(0, 99).content_range(1000) == "bytes 0-99/1000"
    assert ByteRange(0, 99).length == 100
