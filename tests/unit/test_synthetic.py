"""The demo's synthetic source: the picture moves, the clock shows, the encoder's output
is what an RTMP publisher must send (1 s GOP, parseable codec configs, decodable)."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest
from PIL import ImageChops

from ingest.flv import AudioSpecificConfig, AVCDecoderConfigurationRecord
from ingest.synthetic import (
    LiveEncoder,
    PatternPainter,
    SourceConfig,
    annexb_units,
    tone_second,
    write_clip,
)

pytestmark = pytest.mark.unit

SMALL = SourceConfig(width=160, height=96, fps=10, video_kbps=200)


def _band(config: SourceConfig) -> tuple[int, int, int, int]:
    """The clock's band across the middle of the picture."""
    return (0, config.height * 3 // 8, config.width, config.height * 5 // 8)


def test_frames_have_the_size_and_move() -> None:
    painter = PatternPainter(SMALL, clock=lambda: 0.0)
    first, later = painter.paint(0), painter.paint(5)
    assert first.size == later.size == (SMALL.width, SMALL.height)
    assert first.mode == "RGB"
    assert ImageChops.difference(first, later).getbbox() is not None  # motion


def test_the_clock_is_burned_in() -> None:
    """Same frame index, different clock: only the clock's band differs."""
    at_noon = PatternPainter(SMALL, clock=lambda: 43200.0).paint(3)
    a_second_later = PatternPainter(SMALL, clock=lambda: 43201.0).paint(3)
    changed = ImageChops.difference(at_noon, a_second_later).getbbox()
    assert changed is not None
    _, top, _, bottom = _band(SMALL)
    assert changed[1] >= top
    assert changed[3] <= bottom + 1
    same = PatternPainter(SMALL, clock=lambda: 43200.0).paint(3)
    assert ImageChops.difference(at_noon, same).getbbox() is None  # deterministic


def test_the_tone_beeps_in_the_first_tenth_of_each_second() -> None:
    rate = 8000
    samples = struct.unpack(f"<{rate}f", tone_second(rate))
    beep = max(abs(s) for s in samples[: rate // 10])
    rest = max(abs(s) for s in samples[rate // 10 :])
    assert beep > 0.5
    assert 0.05 < rest < 0.15  # the quiet 440 Hz tone, never silence


def test_annexb_splits_on_both_start_code_lengths() -> None:
    stream = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\xcc\x00\x00\x00\x01\x65\x01\x02"
    assert annexb_units(stream) == [b"\x67\xaa", b"\x68\xbb\xcc", b"\x65\x01\x02"]
    assert annexb_units(b"") == []


def test_the_encoder_gives_a_publishable_stream() -> None:
    encoder = LiveEncoder(SMALL, clock=lambda: 0.0)
    packets = [p for _ in range(3 * SMALL.fps) for p in encoder.next_packets()]
    video = [p for p in packets if p.kind == "video"]
    audio = [p for p in packets if p.kind == "audio"]

    assert encoder.video_config is not None
    avc = AVCDecoderConfigurationRecord.parse(encoder.video_config)
    assert avc.profile == 66  # baseline
    assert avc.nalu_length_size == 4
    asc = AudioSpecificConfig.parse(encoder.audio_config)
    assert asc.sample_rate == SMALL.sample_rate
    assert asc.channels == 2

    # A keyframe every second exactly, no B-frames, timestamps in step with the clock.
    assert [p.dts_ms for p in video if p.keyframe] == [0, 1000, 2000]
    assert all(p.pts_ms == p.dts_ms for p in video)
    assert [p.dts_ms for p in video] == [round(i * 1000 / SMALL.fps) for i in range(len(video))]
    stamps = [p.dts_ms for p in audio]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    assert 2900 <= stamps[-1] <= 3000

    # What goes on the wire decodes: AVCC frames with the sequence header's parameters.
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = encoder.video_config
    frames = [f for p in video for f in decoder.decode(av.Packet(p.data))]
    frames += decoder.decode(None)
    assert len(frames) == len(video)
    assert (frames[0].width, frames[0].height) == (SMALL.width, SMALL.height)


def test_the_sample_clip_is_an_mp4_of_the_asked_length(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", seconds=2.0, config=SMALL)
    with av.open(str(path)) as container:
        streams = {s.type: s.codec_context.name for s in container.streams}
        assert streams == {"video": "h264", "audio": "aac"}
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 2 * SMALL.fps
