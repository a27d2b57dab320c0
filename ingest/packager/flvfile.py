"""Replay an FLV file into a media sink, the way the RTMP server hands a publish over.

For the packager's tests and benchmark only: the live path gets its tags from the RTMP
server (``ingest/flv.py``), never from a file. Adobe FLV spec v10.1, Annex E: a 9-byte
header, then tags (type, 24-bit size, 24+8-bit timestamp, stream id, body) each
followed by a 32-bit previous-tag-size. H.264 video tags carry an AVCPacketType and a
signed 24-bit composition time; AAC audio tags an AACPacketType.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.media import CloseReason, MediaSink

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18
CODEC_AVC = 7
SOUND_AAC = 10


class FlvFileError(ValueError):
    """The file is not an FLV file we can replay."""


@dataclass(frozen=True, slots=True)
class FlvTag:
    kind: int
    timestamp_ms: int
    body: bytes


def read_tags(data: bytes) -> Iterator[FlvTag]:
    if data[:3] != b"FLV" or len(data) < 13:
        raise FlvFileError("not an FLV file")
    offset = struct.unpack_from(">I", data, 5)[0] + 4  # header, then PreviousTagSize0
    while offset + 11 <= len(data):
        kind = data[offset] & 0x1F
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(data[offset + 4 : offset + 7], "big") | (data[offset + 7] << 24)
        body = data[offset + 11 : offset + 11 + size]
        if len(body) < size:
            return  # a truncated last tag: the recording was cut
        yield FlvTag(kind, timestamp, body)
        offset += 11 + size + 4


def _amf0(data: bytes, pos: int) -> tuple[Any, int]:  # noqa: PLR0911 - one per AMF0 marker
    marker = data[pos]
    pos += 1
    if marker == 0:  # number
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 1:  # boolean
        return data[pos] != 0, pos + 1
    if marker == 2:  # string
        length = struct.unpack_from(">H", data, pos)[0]
        return data[pos + 2 : pos + 2 + length].decode("utf-8", "replace"), pos + 2 + length
    if marker in (3, 8):  # object, ECMA array (with a 32-bit count first)
        if marker == 8:
            pos += 4
        result: dict[str, Any] = {}
        while pos + 3 <= len(data):
            length = struct.unpack_from(">H", data, pos)[0]
            key = data[pos + 2 : pos + 2 + length].decode("utf-8", "replace")
            pos += 2 + length
            if data[pos] == 9:  # object end
                return result, pos + 1
            result[key], pos = _amf0(data, pos)
        return result, pos
    if marker in (5, 6):  # null, undefined
        return None, pos
    if marker == 10:  # strict array
        count = struct.unpack_from(">I", data, pos)[0]
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _amf0(data, pos)
            items.append(item)
        return items, pos
    raise FlvFileError(f"AMF0 marker {marker} not supported in this test reader")


def parse_metadata(body: bytes) -> dict[str, Any]:
    """``onMetaData`` (or ``@setDataFrame``, ``onMetaData``) → its properties."""
    pos = 0
    values: list[Any] = []
    while pos < len(body) and len(values) < 3:
        value, pos = _amf0(body, pos)
        values.append(value)
    for value in values:
        if isinstance(value, dict):
            return value
    return {}


def _is_header(tag: FlvTag) -> bool:
    if tag.kind == TAG_SCRIPT:
        return True
    if tag.kind == TAG_VIDEO:
        return len(tag.body) >= 2 and tag.body[1] == 0
    return tag.kind == TAG_AUDIO and len(tag.body) >= 2 and tag.body[1] == 0


def replay(
    path: Path | bytes,
    sink: MediaSink,
    *,
    close_reason: CloseReason | None = "publisher_left",
    start_ms: int = 0,
    stop_ms: int | None = None,
) -> int:
    """Feed the tags of an FLV file to ``sink``; returns how many media frames went in.

    Media tags outside ``start_ms <= timestamp < stop_ms`` are skipped (metadata and
    sequence headers always go in), so a file can be published in pieces.
    """
    data = path if isinstance(path, bytes) else path.read_bytes()
    frames = 0
    for tag in read_tags(data):
        body = tag.body
        outside = tag.timestamp_ms < start_ms or (
            stop_ms is not None and tag.timestamp_ms >= stop_ms
        )
        if outside and not _is_header(tag):
            continue
        if tag.kind == TAG_SCRIPT:
            sink.on_metadata(parse_metadata(body))
        elif tag.kind == TAG_VIDEO and len(body) >= 5 and body[0] & 0x0F == CODEC_AVC:
            packet_type = body[1]
            cts = int.from_bytes(body[2:5], "big", signed=True)
            if packet_type == 0:
                sink.on_video_config(body[5:])
            elif packet_type == 1:
                sink.on_video(tag.timestamp_ms, cts, body[0] >> 4 == 1, body[5:])
                frames += 1
        elif tag.kind == TAG_AUDIO and len(body) >= 2 and body[0] >> 4 == SOUND_AAC:
            if body[1] == 0:
                sink.on_audio_config(body[2:])
            else:
                sink.on_audio(tag.timestamp_ms, body[2:])
                frames += 1
    if close_reason is not None:
        sink.close(close_reason)
    return frames
