"""Uploads: ``upload.*`` and ``chunk.uploaded``."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec

from events.envelope import Event


class UploadCreated(Event, frozen=True, tag="upload.created"):
    key_field: ClassVar[str] = "upload_id"
    upload_id: str
    user_id: str
    size: int  # declared Upload-Length; -1 while deferred
    filename: str = ""
    title: str = ""
    description: str = ""
    expires_at: datetime | None = None


class ChunkUploaded(Event, frozen=True, tag="chunk.uploaded"):
    """A chunk is durable in the object store (the HTTP success came after this)."""

    key_field: ClassVar[str] = "upload_id"
    upload_id: str
    offset: int  # where the chunk starts
    length: int
    part_number: int
    checksum: str = ""  # "sha256:<hex>" / "sha1:<hex>" when the client sent one
    complete: bool = False  # this chunk carried the last byte


class MediaProbe(msgspec.Struct, frozen=True, kw_only=True):
    """What the safety-netted probe found in an upload."""

    container: str
    duration_s: float
    width: int = 0
    height: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    fps: float = 0.0
    bit_rate: int = 0


class UploadCompleted(Event, frozen=True, tag="upload.completed"):
    key_field: ClassVar[str] = "upload_id"
    upload_id: str
    user_id: str
    video_id: str
    object_key: str
    size: int
    sha256: str
    probe: MediaProbe
    filename: str = ""
    title: str = ""
    description: str = ""


class UploadRejected(Event, frozen=True, tag="upload.rejected"):
    key_field: ClassVar[str] = "upload_id"
    upload_id: str
    user_id: str
    code: str  # machine-readable: "not_media" | "too_large_dimensions" | "too_long" | …
    reason: str  # what the user sees
    # The bytes that were durable when it ended: all of them for the uploader's
    # verdicts, what had arrived for a cancelled one (0 in events from before).
    offset: int = 0


class UploadExpired(Event, frozen=True, tag="upload.expired"):
    key_field: ClassVar[str] = "upload_id"
    upload_id: str
    user_id: str
    offset: int
    size: int
