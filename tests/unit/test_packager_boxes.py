"""The box splitter and the fMP4 writer's structure (ISO/IEC 14496-12)."""

from __future__ import annotations

import struct

import pytest

from ingest.packager import fmp4
from ingest.packager.boxes import Box, BoxError, BoxSplitter, box, child_boxes, iter_boxes
from ingest.packager.codecs import AacConfig

pytestmark = pytest.mark.unit


def test_splitter_any_chunking() -> None:
    stream = box(b"ftyp", b"iso6") + box(b"moov", box(b"mvhd", bytes(4))) + box(b"mdat", b"x" * 70)
    for size in (1, 3, 7, 64, len(stream)):
        splitter = BoxSplitter()
        found: list[Box] = []
        for start in range(0, len(stream), size):
            found += splitter.feed(stream[start : start + size])
        assert [b.kind for b in found] == ["ftyp", "moov", "mdat"]
        assert b"".join(b.data for b in found) == stream
        assert splitter.pending == 0


def test_splitter_large_size_header() -> None:
    payload = b"abc"
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    (found,) = BoxSplitter().feed(large)
    assert found.kind == "mdat"
    assert found.payload == payload


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">I4s", 4, b"moof"), "declares 4 bytes, less than its header"),
        (struct.pack(">I4s", 0, b"mdat"), "runs to the end of the stream"),
        (struct.pack(">I4s", 0x7FFF_FFFF, b"mdat"), "over the"),
    ],
)
def test_splitter_refuses_bad_sizes(data: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        BoxSplitter().feed(data)


def test_trailing_bytes_are_an_error() -> None:
    with pytest.raises(BoxError, match="3 bytes after the last whole box"):
        list(iter_boxes(box(b"free") + b"abc"))


def test_audio_only_init_and_fragment_layout() -> None:
    aac = AacConfig.parse(bytes([0x11, 0x90]))
    init = fmp4.init_segment(None, aac)
    ftyp, moov = iter_boxes(init)
    assert (ftyp.kind, moov.kind) == ("ftyp", "moov")
    assert [b.kind for b in child_boxes(moov)] == ["mvhd", "trak", "mvex"]

    samples = [
        fmp4.Sample(dts=1024 * i, duration=1024, data=bytes([i]) * (10 + i)) for i in range(3)
    ]
    moof, mdat = iter_boxes(fmp4.fragment(7, [], samples))
    mfhd, traf = child_boxes(moof)
    assert struct.unpack(">I", mfhd.payload[4:8]) == (7,)
    _tfhd, tfdt, trun = child_boxes(traf)
    assert struct.unpack(">IQ", tfdt.payload) == (1 << 24, 0)  # version 1, time 0
    count, offset = struct.unpack(">Ii", trun.payload[4:12])
    assert count == 3
    # data_offset points from the moof's first byte to the first sample in the mdat.
    assert offset == len(moof.data) + 8
    assert mdat.payload == b"".join(s.data for s in samples)


def test_video_sample_flags_and_negative_composition_offset() -> None:
    video = [
        fmp4.Sample(dts=0, duration=3000, data=b"k", sync=True, cts=6000),
        fmp4.Sample(dts=3000, duration=3000, data=b"p", sync=False, cts=-3000),
    ]
    moof, _ = iter_boxes(fmp4.fragment(1, video, []))
    _, traf = child_boxes(moof)
    trun = child_boxes(traf)[2]
    entries = [struct.unpack(">IIIi", trun.payload[12 + 16 * i : 28 + 16 * i]) for i in range(2)]
    assert entries == [
        (3000, 1, fmp4.SYNC_SAMPLE_FLAGS, 6000),
        (3000, 1, fmp4.NON_SYNC_SAMPLE_FLAGS, -3000),
    ]


def test_fragment_needs_samples() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        fmp4.fragment(1, [], [])
