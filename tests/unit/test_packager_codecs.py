"""AVC/AAC configuration records → picture size, frame rate, RFC 6381 codec strings."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from ingest.packager.bits import BitReader, unescape_rbsp
from ingest.packager.codecs import AacConfig, AvcConfig, parse_sps
from ingest.packager.errors import ConfigError
from ingest.packager.testmedia import make_flv

pytestmark = pytest.mark.unit


def _avcc_of(path: Path) -> bytes:
    with av.open(str(path)) as container:
        extradata = container.streams.video[0].codec_context.extradata
        assert extradata is not None
        return bytes(extradata)


@pytest.mark.parametrize(
    ("width", "height", "fps"),
    [(1920, 1080, 30), (640, 360, 25), (1280, 720, 60), (426, 240, 24)],
)
def test_sps_size_and_rate_from_x264(tmp_path: Path, width: int, height: int, fps: int) -> None:
    flv = make_flv(
        tmp_path / "v.flv", seconds=0.2, width=width, height=height, fps=fps, audio=False
    )
    config = AvcConfig.parse(_avcc_of(flv))
    # 1080 is coded as 1088 and cropped (H.264 §7.4.2.1.1 frame_crop_*).
    assert (config.sps.width, config.sps.height) == (width, height)
    assert config.sps.fps == pytest.approx(fps)
    assert config.nal_length_size == 4
    record = config.record
    assert config.codec_string == f"avc1.{record[1]:02X}{record[2]:02X}{record[3]:02X}"


def test_avc_record_errors_are_precise() -> None:
    with pytest.raises(ConfigError, match="needs >= 7"):
        AvcConfig.parse(b"\x01\x64")
    with pytest.raises(ConfigError, match="version 0"):
        AvcConfig.parse(bytes(8))
    with pytest.raises(ConfigError, match="no SPS"):
        AvcConfig.parse(bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE0, 0, 0]))
    with pytest.raises(ConfigError, match="SPS truncated"):
        AvcConfig.parse(bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 40, 0x67]))
    with pytest.raises(ConfigError, match="not an SPS"):
        parse_sps(b"\x68\x00")


def test_truncated_sps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="truncated"):
        parse_sps(bytes([0x67, 0x42, 0x00, 0x1E]))


def test_exp_golomb_and_emulation_prevention() -> None:
    # ue: 1 → 0, 010 → 1, 011 → 2, 00100 → 3; se: 010 → +1, 011 → -1
    bits = BitReader(bytes([0b1010_0110, 0b0100_0000]))
    assert [bits.ue(), bits.ue(), bits.ue(), bits.ue()] == [0, 1, 2, 3]
    assert BitReader(bytes([0b0100_0000])).se() == 1
    assert BitReader(bytes([0b0110_0000])).se() == -1
    assert unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03") == b"\x00\x00\x01\x00\x00"


@pytest.mark.parametrize(
    ("asc", "object_type", "rate", "channels"),
    [
        (bytes([0x11, 0x90]), 2, 48000, 2),  # AAC-LC 48 kHz stereo
        (bytes([0x12, 0x10]), 2, 44100, 2),
        (bytes([0x11, 0x88]), 2, 48000, 1),
        (bytes([0x2B, 0x92, 0x08, 0x00]), 5, 22050, 2),  # HE-AAC, explicit SBR signalling
    ],
)
def test_audio_specific_config(asc: bytes, object_type: int, rate: int, channels: int) -> None:
    config = AacConfig.parse(asc)
    assert (config.object_type, config.sample_rate, config.channels) == (
        object_type,
        rate,
        channels,
    )
    assert config.codec_string == f"mp4a.40.{object_type}"


def test_bad_audio_specific_config() -> None:
    with pytest.raises(ConfigError, match="needs >= 2"):
        AacConfig.parse(b"\x11")
    with pytest.raises(ConfigError, match="reserved sampling index 13"):
        AacConfig.parse(bytes([0x16, 0x90]))
    with pytest.raises(ConfigError, match="not usable"):
        AacConfig.parse(bytes([0x01, 0x90]))
