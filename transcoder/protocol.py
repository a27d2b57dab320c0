"""What the worker and a job's child process say to each other.

The worker writes one :class:`JobSpec` (JSON) to the child's stdin; the child answers
with newline-separated JSON messages on its stdout: :class:`Progress` while it works,
then exactly one :class:`Result` or :class:`Failure`. Anything the child (or FFmpeg)
prints goes to stderr, never into this channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from common.settings import Settings
from events.catalog import Rendition

__all__ = [
    "ChildMessage",
    "Failure",
    "JobSpec",
    "Progress",
    "Result",
    "decode_message",
    "decode_spec",
    "encode",
]


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    video_id: str
    source_key: str
    # What the uploader's probe said; the child trusts only its own probe, this only
    # fills in a missing container duration.
    duration_hint_s: float = 0.0
    settings: Settings


class Progress(msgspec.Struct, frozen=True, kw_only=True, tag="progress"):
    stage: str  # "thumbnails" | "encoding" | "uploading"
    position_s: float  # decoded media time
    duration_s: float
    elapsed_s: float  # wall time since the child started


class Result(msgspec.Struct, frozen=True, kw_only=True, tag="result"):
    master_key: str
    renditions: list[Rendition]
    poster_key: str
    thumbnail_keys: list[str]
    sprite_key: str
    sprite_vtt_key: str
    duration_s: float
    width: int  # of the largest rendition
    height: int


class Failure(msgspec.Struct, frozen=True, kw_only=True, tag="failure"):
    kind: Literal["poison", "transient"]
    reason: str


ChildMessage = Progress | Result | Failure

_message_decoder: msgspec.json.Decoder[ChildMessage] = msgspec.json.Decoder(ChildMessage)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot decode {kind!r}")


def encode(message: JobSpec | ChildMessage) -> bytes:
    return msgspec.json.encode(message, enc_hook=_enc_hook)


def decode_spec(data: bytes) -> JobSpec:
    return msgspec.json.decode(data, type=JobSpec, dec_hook=_dec_hook)


def decode_message(line: bytes) -> ChildMessage:
    return _message_decoder.decode(line)
