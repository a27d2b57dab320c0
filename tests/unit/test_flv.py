"""FLV tag bodies (E.4.2/E.4.3) and the codec records behind the codec strings."""

from __future__ import annotations

import pytest

from ingest.flv import (
    AudioSpecificConfig,
    AudioTagHeader,
    AVCDecoderConfigurationRecord,
    VideoTagHeader,
)
from ingest.rtmp.errors import ProtocolError
from tests.unit.rtmp_peer import ASC_FFMPEG, AVC_CONFIG, AVC_CONFIG_HIGH444

pytestmark = pytest.mark.unit

ACCEPTED = "this server accepts H.264 (AVC) video and AAC audio"


@pytest.mark.parametrize(
    ("body", "frame_type", "packet_type", "cts", "keyframe"),
    [
        (b"\x17\x00\x00\x00\x00", 1, 0, 0, True),
        (b"\x27\x01\x00\x00\x43", 2, 1, 67, False),
        (b"\x27\x01\xff\xff\xdf", 2, 1, -33, False),  # SI24: composition time may be negative
        (b"\x47\x01\x00\x00\x00", 4, 1, 0, True),  # generated keyframe
        (b"\x17\x02\x00\x00\x00", 1, 2, 0, True),  # end of sequence
    ],
)
def test_avc_video_headers(
    body: bytes, frame_type: int, packet_type: int, cts: int, keyframe: bool
) -> None:
    header = VideoTagHeader.parse(body + b"payload")
    assert (header.frame_type, header.codec_id, header.packet_type) == (frame_type, 7, packet_type)
    assert (header.composition_time, header.keyframe, header.size) == (cts, keyframe, 5)
    assert bytes(header) == body


def test_a_video_info_frame_has_no_avc_header() -> None:
    header = VideoTagHeader.parse(b"\x57\x00")
    assert (header.frame_type, header.keyframe) == (5, False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x1c\x01\x00\x00\x00", f"unsupported video codec HEVC (FLV codec id 12): {ACCEPTED}"),
        (b"\x1d\x01\x00\x00\x00", f"unsupported video codec AV1 (FLV codec id 13): {ACCEPTED}"),
        (b"\x14\x00", f"unsupported video codec On2 VP6 (FLV codec id 4): {ACCEPTED}"),
        (b"\x12\x00", f"unsupported video codec Sorenson H.263 (FLV codec id 2): {ACCEPTED}"),
        (b"\x1f\x00", f"unsupported video codec unknown (FLV codec id 15): {ACCEPTED}"),
        (
            b"\x91hvc1\x00\x00\x00",
            f"unsupported video codec 'hvc1' (Enhanced RTMP): {ACCEPTED}; "
            "turn off enhanced/HEVC/AV1 output in the encoder",
        ),
        (b"", "video tag: empty body (E.4.3.1)"),
        (b"\x17\x01\x00", "video tag: AVC header truncated (3 of 5 bytes)"),
        (b"\x17\x03\x00\x00\x00", "video tag: unknown AVCPacketType 3 (E.4.3.1)"),
        (b"\x07\x01\x00\x00\x00", "video tag: unknown frame type 0 (E.4.3.1)"),
    ],
)
def test_video_refusals(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        VideoTagHeader.parse(body)
    assert str(caught.value) == message


def test_aac_audio_headers() -> None:
    config = AudioTagHeader.parse(b"\xaf\x00\x12\x10")
    assert (config.sound_format, config.packet_type, config.size) == (10, 0, 2)
    assert (config.sound_rate, config.sound_size, config.sound_type) == (3, 1, 1)
    assert bytes(config) == b"\xaf\x00"
    assert AudioTagHeader.parse(b"\xaf\x01\x21").packet_type == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x2f\xff\xfb", f"unsupported audio codec MP3 (FLV sound format 2): {ACCEPTED}"),
        (b"\xb6\x00", f"unsupported audio codec Speex (FLV sound format 11): {ACCEPTED}"),
        (b"\xe2\x00", f"unsupported audio codec MP3 (FLV sound format 14): {ACCEPTED}"),
        (b"\x62\x00", f"unsupported audio codec Nellymoser (FLV sound format 6): {ACCEPTED}"),
        (b"\x72\x00", f"unsupported audio codec G.711 A-law (FLV sound format 7): {ACCEPTED}"),
        (b"\x90Opus", f"unsupported audio codec 'Opus' (Enhanced RTMP): {ACCEPTED}"),
        (b"\xc0\x00", f"unsupported audio codec unknown (FLV sound format 12): {ACCEPTED}"),
        (b"", "audio tag: empty body (E.4.2.1)"),
        (b"\xaf", "audio tag: AAC header truncated (1 of 2 bytes)"),
        (b"\xaf\x02", "audio tag: unknown AACPacketType 2 (E.4.2.2)"),
    ],
)
def test_audio_refusals(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        AudioTagHeader.parse(body)
    assert str(caught.value) == message


def test_avc_decoder_configuration_records() -> None:
    baseline = AVCDecoderConfigurationRecord.parse(AVC_CONFIG)
    assert (baseline.codec, baseline.nalu_length_size) == ("avc1.42c00a", 4)
    assert [len(s) for s in baseline.sps] == [22]
    assert [len(p) for p in baseline.pps] == [4]
    assert bytes(baseline) == AVC_CONFIG

    high = AVCDecoderConfigurationRecord.parse(AVC_CONFIG_HIGH444)
    assert high.codec == "avc1.f4000a"
    assert high.trailing == bytes.fromhex("fff8f800")  # the High-profile extension, kept
    assert bytes(high) == AVC_CONFIG_HIGH444


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (AVC_CONFIG[:6], "AVC sequence header: 6 bytes, at least 7 needed (14496-15 5.3.3.1)"),
        (b"\x00" + AVC_CONFIG[1:], "AVC sequence header: configurationVersion 0, expected 1"),
        (
            AVC_CONFIG[:4] + b"\xfe" + AVC_CONFIG[5:],
            "AVC sequence header: lengthSizeMinusOne 2 is not allowed (5.3.3.1)",
        ),
        (AVC_CONFIG[:20], "AVC sequence header: SPS 0 declares 22 bytes, 12 left"),
        (AVC_CONFIG[:30], "AVC sequence header: truncated before the PPS count"),
        (AVC_CONFIG[:30] + b"\x00", "AVC sequence header: needs at least one SPS and one PPS"),
        (AVC_CONFIG[:32], "AVC sequence header: PPS 0 length truncated"),
        (
            b"\x01\x42\xc0\x0a\xff\xe1\x00\x00",
            "AVC sequence header: SPS 0 declares 0 bytes, 0 left",
        ),
    ],
)
def test_avc_decoder_configuration_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        AVCDecoderConfigurationRecord.parse(data)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("data", "object_type", "rate", "channels", "codec"),
    [
        (ASC_FFMPEG, 2, 44100, 2, "mp4a.40.2"),  # with ffmpeg's SBR sync extension
        (bytes.fromhex("1188"), 2, 48000, 1, "mp4a.40.2"),
        (bytes.fromhex("2b90"), 5, 22050, 2, "mp4a.40.5"),  # HE-AAC
        (bytes.fromhex("17805dc010"), 2, 48000, 2, "mp4a.40.2"),  # explicit frequency
        (bytes.fromhex("f82640"), 33, 48000, 2, "mp4a.40.33"),  # escaped object type
    ],
)
def test_audio_specific_configs(
    data: bytes, object_type: int, rate: int, channels: int, codec: str
) -> None:
    config = AudioSpecificConfig.parse(data)
    assert config.object_type == object_type
    assert (config.sample_rate, config.channels) == (rate, channels)
    assert config.codec == codec
    assert bytes(config) == data


def test_audio_specific_config_short_form_serializes() -> None:
    config = AudioSpecificConfig(2, 4, 44100, 2)
    assert bytes(config) == b"\x12\x10"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x12", "AAC sequence header: truncated (1 bytes) (14496-3 1.6.2.1)"),
        (b"", "AAC sequence header: truncated (0 bytes) (14496-3 1.6.2.1)"),
        (b"\x00\x10", "AAC sequence header: audioObjectType 0 is not valid"),
        (b"\x16\x90", "AAC sequence header: samplingFrequencyIndex 13 is reserved"),
        (b"\x12\x40", "AAC sequence header: channelConfiguration 8 is reserved"),
        (b"\x17\x80\x00\x00\x10", "AAC sequence header: sampling frequency 0"),
    ],
)
def test_audio_specific_config_refusals(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        AudioSpecificConfig.parse(data)
    assert str(caught.value) == message
