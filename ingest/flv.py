"""FLV audio and video tag *bodies*: what RTMP audio/video messages carry (RTMP 7.1.4/7.1.5).

References: Adobe "Video File Format Specification" v10.1, annex E.4.2 (AUDIODATA /
AACAUDIODATA) and E.4.3 (VIDEODATA / AVCVIDEOPACKET); ISO/IEC 14496-15 5.3.3.1
(AVCDecoderConfigurationRecord); ISO/IEC 14496-3 1.6.2.1 (AudioSpecificConfig);
RFC 6381 3.3 (codec strings); veovera "Enhanced RTMP" (the ExHeader bit, FourCCs).

Wire structs parse with ``parse()`` and serialize with ``__bytes__``; anything
malformed, truncated or in a codec we do not take is a :class:`ProtocolError` whose
text is what the publisher is told.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final, Self

from ingest.rtmp.errors import ProtocolError

__all__ = [
    "AACPacketType",
    "AVCDecoderConfigurationRecord",
    "AVCPacketType",
    "AudioSpecificConfig",
    "AudioTagHeader",
    "FrameType",
    "SoundFormat",
    "VideoCodec",
    "VideoTagHeader",
]

ACCEPTED: Final = "this server accepts H.264 (AVC) video and AAC audio"


class VideoCodec(enum.IntEnum):
    """E.4.3.1 CodecID (plus the non-standard ids Chinese CDNs use for HEVC and AV1)."""

    SORENSON_H263 = 2
    SCREEN_VIDEO = 3
    VP6 = 4
    VP6_ALPHA = 5
    SCREEN_VIDEO_V2 = 6
    AVC = 7
    HEVC_LEGACY = 12
    AV1_LEGACY = 13


_VIDEO_NAMES: Final = {
    2: "Sorenson H.263",
    3: "Screen video",
    4: "On2 VP6",
    5: "On2 VP6 with alpha",
    6: "Screen video v2",
    7: "H.264",
    12: "HEVC",
    13: "AV1",
}


class FrameType(enum.IntEnum):
    """E.4.3.1 FrameType."""

    KEY = 1
    INTER = 2
    DISPOSABLE_INTER = 3
    GENERATED_KEY = 4
    INFO = 5  # video info/command frame: no picture


class AVCPacketType(enum.IntEnum):
    """E.4.3.1 AVCPacketType."""

    SEQUENCE_HEADER = 0
    NALU = 1
    END_OF_SEQUENCE = 2


class SoundFormat(enum.IntEnum):
    """E.4.2.1 SoundFormat (9 is Enhanced RTMP's ExHeader)."""

    LINEAR_PCM = 0
    ADPCM = 1
    MP3 = 2
    LINEAR_PCM_LE = 3
    NELLYMOSER_16K = 4
    NELLYMOSER_8K = 5
    NELLYMOSER = 6
    G711_ALAW = 7
    G711_MULAW = 8
    EX_HEADER = 9
    AAC = 10
    SPEEX = 11
    MP3_8K = 14
    DEVICE_SPECIFIC = 15


_AUDIO_NAMES: Final = {
    0: "linear PCM",
    1: "ADPCM",
    2: "MP3",
    3: "linear PCM",
    4: "Nellymoser",
    5: "Nellymoser",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    10: "AAC",
    11: "Speex",
    14: "MP3",
    15: "device-specific",
}


class AACPacketType(enum.IntEnum):
    """E.4.2.2 AACPacketType."""

    SEQUENCE_HEADER = 0
    RAW = 1


_SI24 = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class VideoTagHeader:
    """E.4.3.1 VIDEODATA header; ``packet_type``/``composition_time`` for AVC only.

    ``size`` is how many body bytes the header takes (1, or 5 for AVC).
    """

    frame_type: int
    codec_id: int
    packet_type: int = AVCPacketType.NALU
    composition_time: int = 0  # E.4.3.1: SI24 milliseconds, pts = dts + cts

    @property
    def keyframe(self) -> bool:
        return self.frame_type in (FrameType.KEY, FrameType.GENERATED_KEY)

    @property
    def size(self) -> int:
        return 5 if self.codec_id == VideoCodec.AVC else 1

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if not body:
            raise ProtocolError("video tag: empty body (E.4.3.1)")
        first = body[0]
        if first & 0x80:
            # Enhanced RTMP: IsExHeader, then a FourCC (hvc1, av01, vp09, avc1…).
            fourcc = body[1:5].decode("latin-1") if len(body) >= 5 else "?"
            raise ProtocolError(
                f"unsupported video codec {fourcc!r} (Enhanced RTMP): {ACCEPTED}; "
                "turn off enhanced/HEVC/AV1 output in the encoder"
            )
        frame_type, codec_id = first >> 4, first & 0x0F
        if codec_id != VideoCodec.AVC:
            name = _VIDEO_NAMES.get(codec_id, "unknown")
            raise ProtocolError(
                f"unsupported video codec {name} (FLV codec id {codec_id}): {ACCEPTED}"
            )
        if frame_type == FrameType.INFO:
            return cls(frame_type, codec_id)
        if len(body) < 5:
            raise ProtocolError(f"video tag: AVC header truncated ({len(body)} of 5 bytes)")
        packet_type = body[1]
        if packet_type > AVCPacketType.END_OF_SEQUENCE:
            raise ProtocolError(f"video tag: unknown AVCPacketType {packet_type} (E.4.3.1)")
        if frame_type not in (1, 2, 3, 4):
            raise ProtocolError(f"video tag: unknown frame type {frame_type} (E.4.3.1)")
        (composition_time,) = _SI24.unpack(body[2:5] + b"\x00")
        return cls(frame_type, codec_id, packet_type, composition_time >> 8)

    def __bytes__(self) -> bytes:
        first = bytes(((self.frame_type << 4) | self.codec_id,))
        if self.codec_id != VideoCodec.AVC:
            return first
        cts = (self.composition_time & 0xFFFFFF).to_bytes(3, "big")
        return first + bytes((self.packet_type,)) + cts


@dataclass(frozen=True, slots=True)
class AudioTagHeader:
    """E.4.2.1 AUDIODATA header (+ E.4.2.2 AACPacketType for AAC)."""

    sound_format: int
    sound_rate: int = 3  # 0: 5.5 kHz, 1: 11 kHz, 2: 22 kHz, 3: 44 kHz (AAC: always 3)
    sound_size: int = 1  # 0: 8-bit, 1: 16-bit
    sound_type: int = 1  # 0: mono, 1: stereo (AAC: always 1)
    packet_type: int = AACPacketType.RAW

    @property
    def size(self) -> int:
        return 2 if self.sound_format == SoundFormat.AAC else 1

    @classmethod
    def parse(cls, body: bytes) -> Self:
        if not body:
            raise ProtocolError("audio tag: empty body (E.4.2.1)")
        first = body[0]
        sound_format = first >> 4
        if sound_format == SoundFormat.EX_HEADER:
            fourcc = body[1:5].decode("latin-1") if len(body) >= 5 else "?"
            raise ProtocolError(f"unsupported audio codec {fourcc!r} (Enhanced RTMP): {ACCEPTED}")
        if sound_format != SoundFormat.AAC:
            name = _AUDIO_NAMES.get(sound_format, "unknown")
            raise ProtocolError(
                f"unsupported audio codec {name} (FLV sound format {sound_format}): {ACCEPTED}"
            )
        if len(body) < 2:
            raise ProtocolError("audio tag: AAC header truncated (1 of 2 bytes)")
        packet_type = body[1]
        if packet_type > AACPacketType.RAW:
            raise ProtocolError(f"audio tag: unknown AACPacketType {packet_type} (E.4.2.2)")
        return cls(sound_format, (first >> 2) & 3, (first >> 1) & 1, first & 1, packet_type)

    def __bytes__(self) -> bytes:
        first = (
            (self.sound_format << 4) | (self.sound_rate << 2) | (self.sound_size << 1)
        ) | self.sound_type
        if self.sound_format != SoundFormat.AAC:
            return bytes((first,))
        return bytes((first, self.packet_type))


@dataclass(frozen=True, slots=True)
class AVCDecoderConfigurationRecord:
    """ISO/IEC 14496-15 5.3.3.1: the H.264 sequence header (SPS and PPS)."""

    profile: int
    compatibility: int
    level: int
    nalu_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    trailing: bytes = b""  # the High-profile extension fields, kept as they came

    @property
    def codec(self) -> str:
        """RFC 6381 3.3: ``avc1.PPCCLL``."""
        return f"avc1.{self.profile:02x}{self.compatibility:02x}{self.level:02x}"

    @classmethod
    def parse(cls, data: bytes) -> Self:
        what = "AVC sequence header"
        if len(data) < 7:
            raise ProtocolError(f"{what}: {len(data)} bytes, at least 7 needed (14496-15 5.3.3.1)")
        if data[0] != 1:
            raise ProtocolError(f"{what}: configurationVersion {data[0]}, expected 1")
        length_size = (data[4] & 0x03) + 1
        if length_size == 3:
            raise ProtocolError(f"{what}: lengthSizeMinusOne 2 is not allowed (5.3.3.1)")
        offset = 5
        sps, offset = _parameter_sets(data, offset, data[offset] & 0x1F, "SPS")
        if offset >= len(data):
            raise ProtocolError(f"{what}: truncated before the PPS count")
        pps, offset = _parameter_sets(data, offset, data[offset], "PPS")
        if not sps or not pps:
            raise ProtocolError(f"{what}: needs at least one SPS and one PPS")
        return cls(data[1], data[2], data[3], length_size, sps, pps, bytes(data[offset:]))

    def __bytes__(self) -> bytes:
        out = bytearray(
            (1, self.profile, self.compatibility, self.level, 0xFC | (self.nalu_length_size - 1))
        )
        out.append(0xE0 | len(self.sps))
        for unit in self.sps:
            out += len(unit).to_bytes(2, "big") + unit
        out.append(len(self.pps))
        for unit in self.pps:
            out += len(unit).to_bytes(2, "big") + unit
        return bytes(out + self.trailing)


def _parameter_sets(
    data: bytes, offset: int, count: int, what: str
) -> tuple[tuple[bytes, ...], int]:
    offset += 1
    units: list[bytes] = []
    for index in range(count):
        if offset + 2 > len(data):
            raise ProtocolError(f"AVC sequence header: {what} {index} length truncated")
        size = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if size == 0 or offset + size > len(data):
            raise ProtocolError(
                f"AVC sequence header: {what} {index} declares {size} bytes, "
                f"{len(data) - offset} left"
            )
        units.append(bytes(data[offset : offset + size]))
        offset += size
    return tuple(units), offset


# ISO/IEC 14496-3 1.6.3.4 samplingFrequencyIndex (13 and 14 reserved; 15 = explicit).
SAMPLE_RATES: Final = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip


class _Bits:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, count: int) -> int:
        if self.pos + count > len(self.data) * 8:
            raise ProtocolError(
                f"AAC sequence header: truncated ({len(self.data)} bytes) (14496-3 1.6.2.1)"
            )
        value = 0
        for _ in range(count):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """ISO/IEC 14496-3 1.6.2.1 (the leading fields): the AAC sequence header."""

    object_type: int  # 2: AAC-LC, 5: HE-AAC (SBR), 29: HE-AACv2 (PS)
    sampling_index: int
    sample_rate: int
    channels: int  # channelConfiguration; 0: defined in the stream (PCE)
    raw: bytes = b""

    @property
    def codec(self) -> str:
        """RFC 6381 3.3 / 14496-3: ``mp4a.40.<audioObjectType>``."""
        return f"mp4a.40.{self.object_type}"

    @classmethod
    def parse(cls, data: bytes) -> Self:
        bits = _Bits(data)
        object_type = bits.read(5)
        if object_type == 31:  # escape: 6 more bits
            object_type = 32 + bits.read(6)
        if object_type == 0:
            raise ProtocolError("AAC sequence header: audioObjectType 0 is not valid")
        sampling_index = bits.read(4)
        if sampling_index == 15:
            sample_rate = bits.read(24)
        elif sampling_index < len(SAMPLE_RATES):
            sample_rate = SAMPLE_RATES[sampling_index]
        else:
            raise ProtocolError(
                f"AAC sequence header: samplingFrequencyIndex {sampling_index} is reserved"
            )
        if sample_rate == 0:
            raise ProtocolError("AAC sequence header: sampling frequency 0")
        channels = bits.read(4)
        if channels > 7:
            raise ProtocolError(f"AAC sequence header: channelConfiguration {channels} is reserved")
        return cls(object_type, sampling_index, sample_rate, channels, bytes(data))

    def __bytes__(self) -> bytes:
        if self.raw:
            return self.raw
        if self.object_type >= 31 or self.sampling_index == 15:
            raise ValueError("only the two-byte form is serialized")
        value = (self.object_type << 11) | (self.sampling_index << 7) | (self.channels << 3)
        return value.to_bytes(2, "big")
