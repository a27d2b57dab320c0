"""Errors of the upload engine and the tus protocol core, each carrying its HTTP status.

They are plain exceptions (no web framework), so the sans-IO core and the engine can
raise them and be tested alone; ``gateway.tus.routes`` turns them into
``application/problem+json`` answers with the tus headers. The simple API uses the
same errors, so both front doors answer the same status for the same fault.

    TusError                      base; ``status``, ``slug``, ``headers``
    ├── BadRequest           400  malformed header, metadata, length change, ...
    ├── RequestTimeout       408  the body stalled for tus_read_timeout_s (bytes kept)
    ├── OffsetMismatch       409  Upload-Offset is not the durable offset (tus 1.0 §PATCH)
    ├── UploadComplete       409  termination of an upload that is already being processed
    ├── UploadNotFound       404  unknown id, another user's upload, or terminated
    ├── UploadGone           410  expired (tus expiration extension)
    ├── VersionUnsupported   412  Tus-Resumable is not 1.0.0 (tus 1.0 §Tus-Resumable)
    ├── TooLarge             413  Upload-Length above Tus-Max-Size
    ├── WrongContentType     415  PATCH without application/offset+octet-stream
    ├── UploadLocked         423  another PATCH holds the upload's lock
    ├── ChecksumMismatch     460  Upload-Checksum differs (tus checksum extension)
    └── StorageUnavailable   503  the object store or the database failed; retry later
"""

# ruff: noqa: N818 - the names read as the verdict at call sites (like common.store)

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadRequest",
    "ChecksumMismatch",
    "OffsetMismatch",
    "RequestTimeout",
    "StorageUnavailable",
    "TooLarge",
    "TusError",
    "UploadComplete",
    "UploadGone",
    "UploadLocked",
    "UploadNotFound",
    "VersionUnsupported",
    "WrongContentType",
]


class TusError(Exception):
    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(TusError):
    pass


class RequestTimeout(TusError):
    status = 408
    slug = "upload-read-timeout"
    title = "The upload body stalled"


class OffsetMismatch(TusError):
    status = 409
    slug = "upload-offset-mismatch"
    title = "Upload-Offset does not match"

    def __init__(self, detail: str, *, offset: int) -> None:
        # The durable offset in the answer lets a client resume without a HEAD.
        super().__init__(detail, headers={"Upload-Offset": str(offset)})
        self.offset = offset


class UploadComplete(TusError):
    status = 409
    slug = "upload-complete"
    title = "The upload is complete"


class UploadNotFound(TusError):
    status = 404
    slug = "upload-not-found"
    title = "Upload not found"


class UploadGone(TusError):
    status = 410
    slug = "upload-expired"
    title = "Upload expired"


class VersionUnsupported(TusError):
    status = 412
    slug = "tus-version-unsupported"
    title = "Unsupported tus version"


class TooLarge(TusError):
    status = 413
    slug = "upload-too-large"
    title = "Upload too large"


class WrongContentType(TusError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class UploadLocked(TusError):
    status = 423
    slug = "upload-locked"
    title = "Upload locked"


class ChecksumMismatch(TusError):
    # 460 is the tus checksum extension's own code ("Checksum Mismatch").
    status = 460
    slug = "upload-checksum-mismatch"
    title = "Checksum mismatch"


class StorageUnavailable(TusError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        # tus clients retry 5xx: tell them when (RFC 9110 §10.2.3).
        super().__init__(detail, headers={"Retry-After": "5", **(headers or {})})
