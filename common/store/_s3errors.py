"""Map what the minio SDK and urllib3 raise onto the store's error tree."""

from __future__ import annotations

from minio.error import InvalidResponseError, S3Error, ServerError
from urllib3.exceptions import HTTPError as Urllib3Error

from common.store.errors import (
    InvalidPart,
    InvalidRange,
    ObjectNotFound,
    PartTooSmall,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)

__all__ = ["map_error"]

# S3 error code -> (our class, message template). Codes: AWS S3 API "Error responses".
_BY_CODE: dict[str, tuple[type[StoreError], str]] = {
    "NoSuchUpload": (UploadNotFound, "unknown upload for {key!r}: {detail}"),
    "InvalidRange": (InvalidRange, "range is outside {key!r}: {detail}"),
    "EntityTooSmall": (
        PartTooSmall,
        "S3 refused to complete {key!r}: every part but the last must be at least 5 MiB ({detail})",
    ),
    "InvalidPart": (InvalidPart, "S3 refused the parts of {key!r}: {detail}"),
    "InvalidPartOrder": (InvalidPart, "S3 refused the part order of {key!r}: {detail}"),
    "NoSuchBucket": (StoreError, "bucket {bucket!r} does not exist; call ensure_ready() first"),
    "AccessDenied": (StoreError, "S3 denied access to bucket {bucket!r}: {detail}"),
    "SignatureDoesNotMatch": (StoreError, "S3 rejected our signature: check the secret key"),
    "InvalidAccessKeyId": (StoreError, "S3 does not know our access key"),
    "SlowDown": (StoreUnavailable, "S3 asks us to slow down: {detail}"),
    "ServiceUnavailable": (StoreUnavailable, "S3 is unavailable: {detail}"),
    "InternalError": (StoreUnavailable, "S3 internal error: {detail}"),
    "XMinioServerNotInitialized": (StoreUnavailable, "MinIO is still starting: {detail}"),
}


def _from_s3(exc: S3Error, key: str | None, bucket: str) -> StoreError:
    code = exc.code or ""
    if code == "NoSuchKey":
        # object_name first: compose reports the missing *source*, not the destination.
        return ObjectNotFound(exc.object_name or key or "")
    detail = exc.message or code
    cls, template = _BY_CODE.get(code, (StoreError, "S3 error {code} on {key!r}: {detail}"))
    return cls(template.format(key=key, bucket=bucket, code=code or "unknown", detail=detail))


def map_error(exc: BaseException, key: str | None, bucket: str) -> BaseException:
    """The store error for ``exc``; anything unrelated (a bug) is returned unchanged."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, S3Error):
        return _from_s3(exc, key, bucket)
    if isinstance(exc, ServerError | InvalidResponseError):
        # 5xx, or a non-S3 answer (a proxy's HTML error page).
        return StoreUnavailable(f"S3 endpoint failed: {exc}")
    if isinstance(exc, Urllib3Error | ConnectionError | TimeoutError):
        # MaxRetryError wraps "connection refused" once urllib3's retries run out.
        return StoreUnavailable(f"S3 endpoint unreachable: {exc}")
    return exc
