"""The alternative we measured against: FFmpeg's mp4 muxer in CMAF fragment mode (PyAV).

Only the benchmark uses it (``bench.py``). NOTES.md's recipe: codec parameters from a
tiny synthetic FLV (the two sequence headers and the first frames) opened with
``av.open(BytesIO, format="flv")``; one long-lived mp4 muxer with movflags
``+cmaf+frag_keyframe+empty_moov+default_base_moof`` and ``frag_duration`` one frame
below the part target, writing into a sink that splits boxes: ``ftyp``+``moov`` are
the init segment, each ``moof``+``mdat`` a part.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av

from ingest.packager.boxes import BoxSplitter
from ingest.packager.flvfile import CODEC_AVC, SOUND_AAC, TAG_AUDIO, TAG_VIDEO

MOVFLAGS = "+cmaf+frag_keyframe+empty_moov+default_base_moof"


def _flv_tag(kind: int, timestamp_ms: int, body: bytes) -> bytes:
    header = bytes([kind]) + len(body).to_bytes(3, "big")
    header += (timestamp_ms & 0xFFFFFF).to_bytes(3, "big") + bytes([timestamp_ms >> 24 & 0xFF])
    header += bytes(3)
    return header + body + struct.pack(">I", 11 + len(body))


def synthetic_flv(avcc: bytes, asc: bytes | None, keyframe: bytes, aac: bytes | None) -> bytes:
    """A few-tag FLV carrying the two configs and one frame of each track."""
    flags = 0x01 | (0x04 if asc is not None else 0)
    data = b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + struct.pack(">I", 0)
    data += _flv_tag(TAG_VIDEO, 0, bytes([0x10 | CODEC_AVC, 0, 0, 0, 0]) + avcc)
    if asc is not None:
        data += _flv_tag(TAG_AUDIO, 0, bytes([SOUND_AAC << 4 | 0x0F, 0]) + asc)
    data += _flv_tag(TAG_VIDEO, 0, bytes([0x10 | CODEC_AVC, 1, 0, 0, 0]) + keyframe)
    if aac is not None:
        data += _flv_tag(TAG_AUDIO, 0, bytes([SOUND_AAC << 4 | 0x0F, 1]) + aac)
    return data


class _SplittingWriter(io.RawIOBase):
    """What the muxer writes into: complete boxes are timestamped and handed on."""

    def __init__(self, on_fragment: Callable[[bytes, float], None]) -> None:
        self._splitter = BoxSplitter()
        self._held: list[bytes] = []
        self._on_fragment = on_fragment
        self.init = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        for box in self._splitter.feed(chunk):
            self._held.append(box.data)
            if box.kind == "moov":
                self.init, self._held = b"".join(self._held), []
            elif box.kind == "mdat":
                self._on_fragment(b"".join(self._held), time.monotonic())
                self._held = []
        return len(chunk)


class PyavCmafMuxer:
    """Sink-shaped: feed it FLV payloads, it reports each fragment and when it appeared."""

    def __init__(self, part_target_s: float, frame_s: float) -> None:
        self.part_target_s = part_target_s
        self.frag_duration_us = round((part_target_s - frame_s) * 1_000_000)
        self.fragments: list[tuple[bytes, float]] = []
        self._writer = _SplittingWriter(lambda data, at: self.fragments.append((data, at)))
        self._avcc = b""
        self._asc: bytes | None = None
        self._held: list[tuple[str, int, int, bool, bytes]] = []
        self._output: Any = None
        self._streams: dict[str, Any] = {}
        self.arrivals: dict[tuple[str, int], float] = {}  # (track, dts) → monotonic arrival

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        pass

    def on_video_config(self, avcc: bytes) -> None:
        self._avcc = avcc

    def on_audio_config(self, asc: bytes) -> None:
        self._asc = asc

    def on_video(self, dts_ms: int, cts_ms: int, keyframe: bool, avcc_nalus: bytes) -> None:
        self._frame(("video", dts_ms, cts_ms, keyframe, avcc_nalus))

    def on_audio(self, dts_ms: int, raw_aac: bytes) -> None:
        self._frame(("audio", dts_ms, 0, True, raw_aac))

    def close(self, reason: str) -> None:
        if self._output is not None:
            self._output.close()

    def _frame(self, frame: tuple[str, int, int, bool, bytes]) -> None:
        self.arrivals[(frame[0], frame[1])] = time.monotonic()
        if self._output is None:
            self._held.append(frame)
            kinds = {f[0] for f in self._held}
            if "video" not in kinds or (self._asc is not None and "audio" not in kinds):
                return
            self._open()
            held, self._held = self._held, []
            for item in held:
                self._mux(item)
            return
        self._mux(frame)

    def _open(self) -> None:
        keyframe = next(f[4] for f in self._held if f[0] == "video")
        aac = next((f[4] for f in self._held if f[0] == "audio"), None)
        probe = av.open(
            io.BytesIO(synthetic_flv(self._avcc, self._asc, keyframe, aac)), format="flv"
        )
        self._output = av.open(
            self._writer,
            "w",
            format="mp4",
            options={"movflags": MOVFLAGS, "frag_duration": str(self.frag_duration_us)},
        )
        for stream in probe.streams:
            self._streams[stream.type] = self._output.add_stream_from_template(stream)
        probe.close()

    def _mux(self, frame: tuple[str, int, int, bool, bytes]) -> None:
        track, dts, cts, keyframe, data = frame
        stream = self._streams.get(track)
        if stream is None:
            return
        packet = av.Packet(data)
        packet.dts = dts
        packet.pts = dts + cts
        packet.time_base = Fraction(1, 1000)
        packet.is_keyframe = keyframe
        packet.stream = stream
        self._output.mux(packet)
