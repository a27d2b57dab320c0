"""Master playlist, measured bandwidth, codec strings, sprite VTT: pure functions."""

from __future__ import annotations

import pytest

from transcoder.playlists import (
    MediaSegment,
    Variant,
    avc_codec_string,
    measure_bandwidth,
    parse_media_playlist,
    render_master,
)
from transcoder.thumbnails import SpriteSheet, fit_width, thumbnail_times, vtt_timestamp

pytestmark = pytest.mark.unit

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:6.000000,
seg_00000.m4s
#EXTINF:6.000000,
seg_00001.m4s
#EXTINF:0.200000,
seg_00002.m4s
#EXT-X-ENDLIST
"""


def test_parse_media_playlist() -> None:
    assert parse_media_playlist(MEDIA) == [
        MediaSegment("seg_00000.m4s", 6.0),
        MediaSegment("seg_00001.m4s", 6.0),
        MediaSegment("seg_00002.m4s", 0.2),
    ]


def test_a_segment_without_extinf_is_an_error() -> None:
    with pytest.raises(ValueError, match="EXTINF"):
        parse_media_playlist("#EXTM3U\nseg.m4s\n")


def test_bandwidth_is_measured_peak_and_average() -> None:
    segments = parse_media_playlist(MEDIA)
    sizes = {"seg_00000.m4s": 750_000, "seg_00001.m4s": 1_500_000, "seg_00002.m4s": 100_000}
    peak, average = measure_bandwidth(segments, sizes)
    assert peak == 2_000_000  # 1.5 MB over 6 s; the 0.2 s sliver does not count as peak
    assert average == round(2_350_000 * 8 / 12.2)


def test_a_single_short_segment_still_has_a_peak() -> None:
    peak, average = measure_bandwidth([MediaSegment("a", 0.3)], {"a": 3000})
    assert peak == average == 80_000


def test_codec_string_from_annex_b_and_avcc() -> None:
    annex_b = bytes.fromhex("0000000167640028acd940") + bytes.fromhex("0000000168ebe3cb")
    assert avc_codec_string(annex_b) == "avc1.640028"
    avcc = bytes.fromhex("014d401fffe1")
    assert avc_codec_string(avcc) == "avc1.4d401f"
    with pytest.raises(ValueError, match="SPS"):
        avc_codec_string(b"\x00\x00\x00\x01\x68\x00")


def test_master_playlist_lists_every_attribute_highest_first() -> None:
    master = render_master(
        [
            Variant("360p/index.m3u8", 640, 360, 900_000, 700_000, "avc1.64001e,mp4a.40.2", 30),
            Variant(
                "720p/index.m3u8", 1280, 720, 3_000_000, 2_500_000, "avc1.64001f,mp4a.40.2", 30
            ),
        ]
    )
    assert master.splitlines() == [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,RESOLUTION=1280x720,"
        'CODECS="avc1.64001f,mp4a.40.2",FRAME-RATE=30.000',
        "720p/index.m3u8",
        "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=700000,RESOLUTION=640x360,"
        'CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=30.000',
        "360p/index.m3u8",
    ]
    with pytest.raises(ValueError, match="at least one"):
        render_master([])


def test_vtt_timestamps() -> None:
    assert vtt_timestamp(0) == "00:00:00.000"
    assert vtt_timestamp(61.5) == "00:01:01.500"
    assert vtt_timestamp(3723.004) == "01:02:03.004"


def test_thumbnail_times_are_spread_evenly() -> None:
    assert thumbnail_times(100, 4) == [12.5, 37.5, 62.5, 87.5]
    assert thumbnail_times(0, 4) == [0.0]
    assert thumbnail_times(10, 0) == []


def test_fit_width_keeps_even_sizes() -> None:
    assert fit_width(1920, 1080, 160) == (160, 90)
    assert fit_width(1080, 1920, 160) == (160, 284)
    assert fit_width(100, 50, 160) == (100, 50)  # never wider than the picture


def test_sprite_grid_covers_a_long_video_in_100_tiles() -> None:
    sheet = SpriteSheet.for_video(1280, 720, 3600.0)
    assert (sheet.tile_width, sheet.tile_height) == (160, 90)
    assert sheet.interval_s == 36.0
    assert sheet.capacity == 100


def test_sprite_vtt_points_inside_the_sheet() -> None:
    sheet = SpriteSheet.for_video(640, 360, 25.0)
    sheet.tiles = [object()] * 25  # type: ignore[list-item]  # positions only need the count
    columns, rows = sheet.grid_size()
    assert (columns, rows) == (10, 3)
    vtt = sheet.vtt("sprite.jpg", 25.0)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nsprite.jpg#xywh=0,0,160,90\n")
    assert "00:00:24.000 --> 00:00:25.000\nsprite.jpg#xywh=640,180,160,90" in vtt
    for index in range(25):
        x, y = sheet.position(index)
        assert x + sheet.tile_width <= columns * sheet.tile_width
        assert y + sheet.tile_height <= rows * sheet.tile_height
