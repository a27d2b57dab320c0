"""Object store: one async interface over a local folder and S3/MinIO.

    store = create_store(get_settings())
    await store.ensure_ready()
    await store.put("vod/42/master.m3u8", body, content_type="application/vnd.apple.mpegurl")
    async with await store.get("vod/42/master.m3u8") as stream:
        async for chunk in stream: ...

Backends: :class:`common.store.local.LocalStore`, :class:`common.store.s3.S3Store`
(import them from their modules; the S3 one loads the minio SDK).
"""

from common.store.base import (
    DEFAULT_CONTENT_TYPE,
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    Body,
    MultipartUpload,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
    PartInfo,
)
from common.store.errors import (
    InvalidKey,
    InvalidPart,
    InvalidRange,
    LengthMismatch,
    ObjectNotFound,
    PartTooSmall,
    StoreError,
    StoreUnavailable,
    UploadNotFound,
)
from common.store.factory import create_store
from common.store.keys import validate_key, validate_prefix

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_PART_NUMBER",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "Body",
    "InvalidKey",
    "InvalidPart",
    "InvalidRange",
    "LengthMismatch",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStream",
    "PartInfo",
    "PartTooSmall",
    "StoreError",
    "StoreUnavailable",
    "UploadNotFound",
    "create_store",
    "validate_key",
    "validate_prefix",
]
