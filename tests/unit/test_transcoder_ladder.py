"""Rung selection: never upscale, even sizes, portrait and odd sources, bitrate caps."""

from __future__ import annotations

import pytest

from transcoder.ladder import LadderError, Rung, RungSpec, parse_ladder, select_rungs

pytestmark = pytest.mark.unit

DEFAULT = parse_ladder(["1080p:5000", "720p:2800", "480p:1400", "360p:800"])


def sizes(rungs: list[Rung]) -> list[tuple[str, int, int]]:
    return [(rung.name, rung.width, rung.height) for rung in rungs]


def test_parse_ladder_sorts_largest_first_and_accepts_spellings() -> None:
    assert parse_ladder(["360p:800", "1080=5000k", " 720p : 2800 "]) == [
        RungSpec(1080, 5000),
        RungSpec(720, 2800),
        RungSpec(360, 800),
    ]


@pytest.mark.parametrize(
    "specs", [[], ["720p"], ["720p:abc"], ["0p:100"], ["720p:10"], ["720p:1000", "720p:2000"]]
)
def test_parse_ladder_refuses_nonsense(specs: list[str]) -> None:
    with pytest.raises(LadderError):
        parse_ladder(specs)


def test_full_hd_source_gets_the_whole_ladder() -> None:
    assert sizes(select_rungs(1920, 1080, DEFAULT)) == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]


def test_4k_source_is_capped_at_1080p() -> None:
    assert sizes(select_rungs(3840, 2160, DEFAULT))[0] == ("1080p", 1920, 1080)
    assert len(select_rungs(3840, 2160, DEFAULT)) == 4


def test_small_source_is_never_upscaled() -> None:
    assert sizes(select_rungs(640, 360, DEFAULT)) == [("360p", 640, 360)]


def test_tiny_source_keeps_its_own_size() -> None:
    assert sizes(select_rungs(200, 112, DEFAULT)) == [("112p", 200, 112)]


def test_between_rungs_the_source_size_leads() -> None:
    assert sizes(select_rungs(960, 540, DEFAULT)) == [
        ("540p", 960, 540),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]


@pytest.mark.parametrize(("width", "height"), [(641, 361), (1279, 719), (853, 481), (1001, 563)])
def test_odd_sizes_become_even_and_never_grow(width: int, height: int) -> None:
    for rung in select_rungs(width, height, DEFAULT):
        assert rung.width % 2 == 0
        assert rung.height % 2 == 0
        assert rung.width <= width
        assert rung.height <= height


def test_odd_source_rounds_down_not_up() -> None:
    assert sizes(select_rungs(641, 361, DEFAULT)) == [("360p", 640, 360)]


def test_portrait_video_uses_portrait_boxes() -> None:
    assert sizes(select_rungs(1080, 1920, DEFAULT)) == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]


def test_portrait_phone_clip_below_1080p() -> None:
    assert sizes(select_rungs(720, 1280, DEFAULT)) == [
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]


def test_ultra_wide_is_fitted_by_width() -> None:
    rungs = select_rungs(3840, 800, DEFAULT)
    assert sizes(rungs)[0] == ("1080p", 1920, 400)
    assert all(rung.width <= 1920 for rung in rungs)


def test_square_video() -> None:
    assert sizes(select_rungs(1080, 1080, DEFAULT))[:2] == [
        ("1080p", 1080, 1080),
        ("720p", 720, 720),
    ]


def test_anamorphic_source_gets_square_pixels() -> None:
    # PAL 16:9 DVD: 720x576 coded, 64:45 sample aspect → 1024x576 displayed.
    assert sizes(select_rungs(720, 576, DEFAULT, sample_aspect_ratio=64 / 45)) == [
        ("576p", 1024, 576),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]


def test_bitrate_caps_follow_the_ladder() -> None:
    rungs = select_rungs(1920, 1080, DEFAULT)
    assert [rung.maxrate_kbps for rung in rungs] == [5000, 2800, 1400, 800]
    assert all(rung.bufsize_kbps == 2 * rung.maxrate_kbps for rung in rungs)
    # A source-sized rung between two boxes gets a cap between theirs.
    mid = select_rungs(960, 540, DEFAULT)[0]
    assert 1400 < mid.maxrate_kbps < 2800
    assert select_rungs(640, 360, DEFAULT)[0].maxrate_kbps == 800


def test_high_frame_rate_gets_more_bits() -> None:
    normal = select_rungs(1280, 720, DEFAULT, fps=30)[0]
    fast = select_rungs(1280, 720, DEFAULT, fps=60)[0]
    assert fast.maxrate_kbps == round(normal.maxrate_kbps * 1.5)


def test_degenerate_sizes_are_refused() -> None:
    with pytest.raises(LadderError):
        select_rungs(1, 1, DEFAULT)
