"""A recording's master playlist: one variant, measured from the stored bytes."""

from __future__ import annotations

from urllib.parse import urljoin

import m3u8
import pytest

from events.catalog.live import recording_video_id
from ingest.packager.recording import (
    StoredSegment,
    Variant,
    master_key,
    master_uri_of,
    published_event_id,
    recording_master,
)

pytestmark = pytest.mark.unit

VARIANT = Variant(width=1280, height=720, fps=30.0, codecs="avc1.64001f,mp4a.40.2")


def test_one_variant_with_peak_and_average_bandwidth() -> None:
    segments = [
        StoredSegment(0, 1.0, False, 250_000),  # 2 Mbit/s
        StoredSegment(1, 2.0, False, 250_000),  # 1 Mbit/s
        StoredSegment(2, 0.5, True, 250_000),  # 4 Mbit/s: the peak
    ]
    uri = master_uri_of("live/chan/sess/recording.m3u8")
    master = m3u8.M3U8(recording_master(segments, VARIANT, uri), strict=True)
    (variant,) = master.playlists
    assert variant.uri == "../../live/chan/sess/recording.m3u8"
    info = variant.stream_info
    assert info.bandwidth == 4_000_000
    assert info.average_bandwidth == 1_714_286  # ceil(750 kB · 8 / 3.5 s)
    assert info.resolution == (1280, 720)
    assert info.codecs == "avc1.64001f,mp4a.40.2"
    assert info.frame_rate == 30.0


def test_the_uri_resolves_to_the_live_route_from_the_vod_master() -> None:
    uri = master_uri_of("live/chan/sess/recording.m3u8")
    resolved = urljoin("https://host/vod/v1/master.m3u8", uri)
    assert resolved == "https://host/live/chan/sess/recording.m3u8"


def test_unknown_codecs_and_size_are_left_out() -> None:
    text = recording_master([], Variant(0, 0, 0.0, ""), "x.m3u8")
    assert "RESOLUTION" not in text
    assert "CODECS" not in text
    assert m3u8.M3U8(text, strict=True).playlists[0].stream_info.bandwidth == 1


def test_ids_and_keys_are_stable_and_safe() -> None:
    video_id = recording_video_id("chan", "sess")
    assert video_id == recording_video_id("chan", "sess")
    assert published_event_id(video_id) == published_event_id(video_id)
    assert published_event_id(video_id) != published_event_id(recording_video_id("chan", "s2"))
    assert master_key(video_id) == f"vod/{video_id}/master.m3u8"
    with pytest.raises(ValueError, match="not a safe id"):
        master_key("../etc")
