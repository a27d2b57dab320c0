"""The two decoder configuration records RTMP carries, and what the muxer needs from them.

- :class:`AvcConfig`: the AVCDecoderConfigurationRecord of an FLV AVC sequence header
  (ISO/IEC 14496-15 §5.3.3.1), its first SPS parsed for the picture size and frame
  rate (ITU-T H.264 §7.3.2.1.1, Annex E.1.1), and the RFC 6381 codec string
  ``avc1.PPCCLL``.
- :class:`AacConfig`: the AudioSpecificConfig of an FLV AAC sequence header
  (ISO/IEC 14496-3 §1.6.2.1) and its codec string ``mp4a.40.N`` (RFC 6381 §3.3).

Both are parsed once per session, so clarity wins over speed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.packager.bits import BitReader, unescape_rbsp
from ingest.packager.errors import ConfigError

# H.264 §7.4.2.1.1: profiles whose SPS carries chroma_format_idc and bit depths.
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
_NAL_SPS = 7
# Biggest picture we accept; RELIABILITY.md: reject huge declared dimensions.
MAX_DIMENSION = 16383
MAX_FPS = 240.0

# ISO/IEC 14496-3 Table 1.16: samplingFrequencyIndex → Hz.
AAC_SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
# An AAC access unit holds 1024 PCM samples per channel (960-sample framing is not used
# by any RTMP encoder we know of; ISO/IEC 14496-3 §4.5.1.1 frameLengthFlag).
AAC_FRAME_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class Sps:
    profile_idc: int
    level_idc: int
    width: int
    height: int
    fps: float  # 0.0 when the VUI has no timing info


@dataclass(frozen=True, slots=True)
class AvcConfig:
    record: bytes  # the AVCDecoderConfigurationRecord as received (becomes the avcC box)
    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: Sps

    @property
    def codec_string(self) -> str:
        # RFC 6381 §3.3: avc1 followed by the three bytes of the record in hex.
        return f"avc1.{self.profile:02X}{self.compatibility:02X}{self.level:02X}"

    @classmethod
    def parse(cls, record: bytes) -> AvcConfig:
        # ISO/IEC 14496-15 §5.3.3.1.2: version, profile, compatibility, level,
        # 6 reserved bits + lengthSizeMinusOne, 3 reserved bits + numOfSequenceParameterSets.
        if len(record) < 7:
            raise ConfigError(f"AVC configuration record is {len(record)} bytes, needs >= 7")
        if record[0] != 1:
            raise ConfigError(f"AVC configuration record version {record[0]}, expected 1")
        nal_length_size = (record[4] & 0x03) + 1
        if nal_length_size == 3:
            raise ConfigError("AVC NAL length size 3 is not allowed (ISO/IEC 14496-15)")
        sps_count = record[5] & 0x1F
        if sps_count == 0:
            raise ConfigError("AVC configuration record has no SPS")
        length = int.from_bytes(record[6:8], "big")
        sps_nal = record[8 : 8 + length]
        if len(sps_nal) != length or length == 0:
            raise ConfigError("AVC configuration record: SPS truncated")
        return cls(
            record=bytes(record),
            profile=record[1],
            compatibility=record[2],
            level=record[3],
            nal_length_size=nal_length_size,
            sps=parse_sps(sps_nal),
        )


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    # H.264 §7.3.2.1.1.1
    last, next_scale = 8, 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def _high_profile_fields(bits: BitReader) -> tuple[int, bool]:
    """chroma_format_idc and separate_colour_plane_flag; skips bit depths and scaling."""
    chroma_format_idc = bits.ue()
    separate_colour_plane = chroma_format_idc == 3 and bits.flag()
    bits.ue()  # bit_depth_luma_minus8
    bits.ue()  # bit_depth_chroma_minus8
    bits.flag()  # qpprime_y_zero_transform_bypass_flag
    if bits.flag():  # seq_scaling_matrix_present_flag
        for index in range(8 if chroma_format_idc != 3 else 12):
            if bits.flag():
                _skip_scaling_list(bits, 16 if index < 6 else 64)
    return chroma_format_idc, separate_colour_plane


def parse_sps(nal: bytes) -> Sps:
    """Picture size and frame rate from a sequence parameter set NAL unit."""
    if not nal or nal[0] & 0x1F != _NAL_SPS:
        raise ConfigError("first parameter set is not an SPS NAL unit")
    bits = BitReader(unescape_rbsp(nal[1:]))
    profile_idc = bits.u(8)
    bits.u(8)  # constraint_set flags + reserved_zero_2bits
    level_idc = bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_colour_plane = (
        _high_profile_fields(bits) if profile_idc in _HIGH_PROFILES else (1, False)
    )
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.flag()  # delta_pic_order_always_zero_flag
        bits.se()  # offset_for_non_ref_pic
        bits.se()  # offset_for_top_to_bottom_field
        for _ in range(bits.ue()):  # num_ref_frames_in_pic_order_cnt_cycle
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.flag()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.flag()
    if not frame_mbs_only:
        bits.flag()  # mb_adaptive_frame_field_flag
    bits.flag()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if bits.flag():  # frame_cropping_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    # H.264 §7.4.2.1.1, equations 7-19 to 7-22: crop units depend on chroma subsampling.
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    field_factor = 1 if frame_mbs_only else 2
    if chroma_array_type == 0:
        crop_x, crop_y = 1, field_factor
    else:
        sub_width = 2 if chroma_array_type in (1, 2) else 1
        sub_height = 2 if chroma_array_type == 1 else 1
        crop_x, crop_y = sub_width, sub_height * field_factor
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = field_factor * height_map_units * 16 - crop_y * (crop[2] + crop[3])
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise ConfigError(f"SPS declares a {width}x{height} picture")
    fps = _vui_fps(bits) if bits.bits_left and bits.flag() else 0.0
    return Sps(profile_idc=profile_idc, level_idc=level_idc, width=width, height=height, fps=fps)


def _vui_fps(bits: BitReader) -> float:
    """Frame rate from the VUI timing info (H.264 Annex E.1.1, E.2.1), 0.0 if absent."""
    try:
        # aspect_ratio_info_present_flag, then aspect_ratio_idc 255 = Extended_SAR
        if bits.flag() and bits.u(8) == 255:
            bits.u(32)  # sar_width, sar_height
        if bits.flag():  # overscan_info_present_flag
            bits.flag()
        if bits.flag():  # video_signal_type_present_flag
            bits.u(3)
            bits.flag()
            if bits.flag():  # colour_description_present_flag
                bits.u(24)
        if bits.flag():  # chroma_loc_info_present_flag
            bits.ue()
            bits.ue()
        if not bits.flag():  # timing_info_present_flag
            return 0.0
        units_in_tick = bits.u(32)
        time_scale = bits.u(32)
    except ConfigError:
        return 0.0  # a truncated VUI only costs us the frame rate hint
    if units_in_tick == 0:
        return 0.0
    # E.2.1: one frame is two field ticks for progressive H.264 as x264 and NVENC write it.
    fps = time_scale / (2 * units_in_tick)
    return fps if 0.0 < fps <= MAX_FPS else 0.0


@dataclass(frozen=True, slots=True)
class AacConfig:
    asc: bytes  # the AudioSpecificConfig as received (goes into the esds box)
    object_type: int
    sample_rate: int
    channels: int

    @property
    def codec_string(self) -> str:
        # RFC 6381 §3.3: mp4a, the MPEG-4 Audio OTI 0x40, then the audio object type.
        return f"mp4a.40.{self.object_type}"

    @property
    def frame_duration_s(self) -> float:
        return AAC_FRAME_SAMPLES / self.sample_rate

    @classmethod
    def parse(cls, asc: bytes) -> AacConfig:
        # ISO/IEC 14496-3 §1.6.2.1 AudioSpecificConfig(): audioObjectType (5 bits, 31 →
        # 32 + 6 more), samplingFrequencyIndex (4 bits, 15 → explicit 24-bit rate),
        # channelConfiguration (4 bits).
        if len(asc) < 2:
            raise ConfigError(f"AudioSpecificConfig is {len(asc)} bytes, needs >= 2")
        bits = BitReader(asc)
        object_type = bits.u(5)
        if object_type == 31:
            object_type = 32 + bits.u(6)
        index = bits.u(4)
        if index == 15:
            sample_rate = bits.u(24)
        elif index < len(AAC_SAMPLE_RATES):
            sample_rate = AAC_SAMPLE_RATES[index]
        else:
            raise ConfigError(f"AudioSpecificConfig has reserved sampling index {index}")
        channels = bits.u(4)
        if object_type == 0 or not 1000 <= sample_rate <= 192000:
            raise ConfigError(f"AAC object type {object_type} at {sample_rate} Hz is not usable")
        # channelConfiguration 0 means "in a program config element"; stereo is what
        # every such RTMP stream we have seen carries, and decoders read the PCE anyway.
        return cls(
            asc=bytes(asc), object_type=object_type, sample_rate=sample_rate, channels=channels or 2
        )
