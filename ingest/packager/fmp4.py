"""A small fragmented-MP4 writer: the init segment and one moof+mdat per LL-HLS part.

Why our own writer and not FFmpeg's mp4 muxer in CMAF mode: it decides every
fragment boundary itself (the muxer cuts on its own ``frag_duration`` clock), emits a
part the moment its last frame is in (the muxer waits for the next packet of every
track to interleave), and costs a few struct packs per part. The figures behind the
choice are in ``ingest/packager/bench.py``'s docstring.

Layout (ISO/IEC 14496-12; HLS fMP4 rules in RFC 8216bis §3.1.2):

- init: ``ftyp`` + ``moov`` (``mvhd``, one ``trak`` per track with an empty sample
  table, ``mvex``/``trex``) — the Media Initialization Section of ``EXT-X-MAP``.
- fragment: ``moof`` (``mfhd`` + one ``traf`` per track that has samples: ``tfhd``
  with default-base-is-moof, ``tfdt`` version 1, ``trun`` version 1 so composition
  offsets may be negative) + one ``mdat`` holding video samples, then audio.

Audio and video share one file (a muxed rendition), which is what HLS fMP4 players
expect from a single media playlist; it is therefore not a CMAF *track* file.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.packager.boxes import box, full_box
from ingest.packager.codecs import AacConfig, AvcConfig

VIDEO_TIMESCALE = 90_000  # FLV milliseconds map exactly (x90)
MOVIE_TIMESCALE = 1000
VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2

# ISO/IEC 14496-12 §8.8.3.1 sample flags: sample_depends_on=2 (an I picture), or
# sample_depends_on=1 + sample_is_non_sync_sample.
SYNC_SAMPLE_FLAGS = 0x0200_0000
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000

_UNITY_MATRIX = struct.pack(">9I", 0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2/T "und", packed 5 bits per letter (§8.4.2.3)

# trun flags (§8.8.8.1)
_TRUN_DATA_OFFSET = 0x000001
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTS = 0x000800
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000


@dataclass(frozen=True, slots=True)
class Sample:
    """One access unit as the writer needs it (times in the track's timescale)."""

    dts: int
    duration: int
    data: bytes
    sync: bool = True
    cts: int = 0  # composition offset, pts - dts (may be negative)


# -- init segment -------------------------------------------------------------------


def init_segment(video: AvcConfig | None, audio: AacConfig | None) -> bytes:
    if video is None and audio is None:
        raise ValueError("an init segment needs at least one track")
    traks: list[bytes] = []
    trexs: list[bytes] = []
    if video is not None:
        traks.append(_video_trak(video))
        trexs.append(_trex(VIDEO_TRACK_ID))
    if audio is not None:
        traks.append(_audio_trak(audio))
        trexs.append(_trex(AUDIO_TRACK_ID))
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"isom", b"mp41")
    moov = box(b"moov", _mvhd(), *traks, box(b"mvex", *trexs))
    return ftyp + moov


def _mvhd() -> bytes:
    return full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # times, timescale, duration 0 (live)
        struct.pack(">IH", 0x0001_0000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", AUDIO_TRACK_ID + 1),  # next_track_ID
    )  # fmt: skip


def _tkhd(track_id: int, width: int, height: int, audio: bool) -> bytes:
    # flags 3: track_enabled | track_in_movie (§8.3.2.3)
    return full_box(
        b"tkhd", 0, 0x000003,
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0),  # layer, group, volume
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),  # 16.16 fixed point
    )  # fmt: skip


def _mdia(timescale: int, handler: bytes, name: bytes, media_header: bytes, stsd: bytes) -> bytes:
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name + b"\x00")
    dref = full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 0x000001))
    stbl = box(
        b"stbl",
        stsd,
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", media_header, box(b"dinf", dref), stbl)
    return box(b"mdia", mdhd, hdlr, minf)


def _video_trak(config: AvcConfig) -> bytes:
    width, height = config.sps.width, config.sps.height
    avc1 = box(
        b"avc1",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HH", width, height),
        struct.pack(">II", 0x0048_0000, 0x0048_0000),  # 72 dpi
        bytes(4), struct.pack(">H", 1),  # reserved, frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        box(b"avcC", config.record),
    )  # fmt: skip
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1)
    vmhd = full_box(b"vmhd", 0, 0x000001, bytes(8))
    mdia = _mdia(VIDEO_TIMESCALE, b"vide", b"VideoHandler", vmhd, stsd)
    return box(b"trak", _tkhd(VIDEO_TRACK_ID, width, height, audio=False), mdia)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    # ISO/IEC 14496-1 §8.3.3: sizeOfInstance in 7-bit groups, high bit = "more follows".
    body = b"".join(payload)
    size = len(body)
    groups = [size & 0x7F]
    size >>= 7
    while size:
        groups.append(0x80 | (size & 0x7F))
        size >>= 7
    return bytes([tag, *reversed(groups)]) + body


def _esds(config: AacConfig) -> bytes:
    decoder_specific = _descriptor(0x05, config.asc)
    # objectTypeIndication 0x40 (MPEG-4 Audio), streamType 5 (audio) << 2 | upStream 0 |
    # reserved 1; bufferSizeDB, maxBitrate, avgBitrate unknown (0) for a live source.
    decoder_config = _descriptor(0x04, bytes([0x40, 0x15]), bytes(3), bytes(8), decoder_specific)
    sl_config = _descriptor(0x06, b"\x02")  # predefined: MP4 (ISO/IEC 14496-14 §3.1.2)
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK_ID, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es)


def _audio_trak(config: AacConfig) -> bytes:
    # AudioSampleEntry.samplerate is 16.16 fixed point; above 65535 Hz it cannot be
    # represented and decoders take the rate from the AudioSpecificConfig anyway.
    rate = config.sample_rate if config.sample_rate < 0x1_0000 else 0
    mp4a = box(
        b"mp4a",
        bytes(6), struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", config.channels, 16, 0, 0),
        struct.pack(">I", rate << 16),
        _esds(config),
    )  # fmt: skip
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), mp4a)
    smhd = full_box(b"smhd", 0, 0, bytes(4))
    mdia = _mdia(config.sample_rate, b"soun", b"SoundHandler", smhd, stsd)
    return box(b"trak", _tkhd(AUDIO_TRACK_ID, 0, 0, audio=True), mdia)


def _trex(track_id: int) -> bytes:
    # default description 1, no other defaults: every trun states its own values.
    return full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))


# -- fragments ----------------------------------------------------------------------


def _traf(track_id: int, samples: Sequence[Sample], data_offset: int, video: bool) -> bytes:
    tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", samples[0].dts))
    if video:
        flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE | _TRUN_FLAGS | _TRUN_CTS
        entries = b"".join(
            struct.pack(
                ">IIIi",
                sample.duration,
                len(sample.data),
                SYNC_SAMPLE_FLAGS if sample.sync else NON_SYNC_SAMPLE_FLAGS,
                sample.cts,
            )
            for sample in samples
        )
    else:
        flags = _TRUN_DATA_OFFSET | _TRUN_DURATION | _TRUN_SIZE
        entries = b"".join(struct.pack(">II", s.duration, len(s.data)) for s in samples)
    trun = full_box(b"trun", 1, flags, struct.pack(">Ii", len(samples), data_offset), entries)
    return box(b"traf", tfhd, tfdt, trun)


def fragment(sequence: int, video: Sequence[Sample], audio: Sequence[Sample]) -> bytes:
    """One moof+mdat: ``sequence`` is the mfhd sequence number (1, 2, … per session)."""
    if not video and not audio:
        raise ValueError("a fragment needs at least one sample")
    video_bytes = sum(len(s.data) for s in video)

    def moof(video_offset: int, audio_offset: int) -> bytes:
        trafs = []
        if video:
            trafs.append(_traf(VIDEO_TRACK_ID, video, video_offset, video=True))
        if audio:
            trafs.append(_traf(AUDIO_TRACK_ID, audio, audio_offset, video=False))
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), *trafs)

    # Offsets are relative to the moof's first byte (default-base-is-moof) and do not
    # change the moof's size, so measure it once with zeros.
    moof_size = len(moof(0, 0))
    first = moof_size + 8  # the mdat header
    header = moof(first, first + video_bytes)
    payload = [s.data for s in video] + [s.data for s in audio]
    total = 8 + video_bytes + sum(len(s.data) for s in audio)
    return b"".join((header, struct.pack(">I4s", total, b"mdat"), *payload))
