"""The one place that calls minio's private multipart methods.

minio 7.2.20 exposes S3 multipart uploads only as underscore methods (its own
``put_object`` drives them). tus needs them directly: parts arrive in separate HTTP
requests, and ListParts is how an upload's offset is recovered after a restart. The
SDK is pinned (pyproject); :func:`_check_sdk` fails at import if an upgrade renamed
anything, instead of mid-upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from minio import Minio
from minio.datatypes import Part

__all__ = ["MinioMultipart", "RemotePart"]

_PRIVATE_METHODS = (
    "_list_multipart_uploads",
    "_create_multipart_upload",
    "_upload_part",
    "_list_parts",
    "_complete_multipart_upload",
    "_abort_multipart_upload",
)


def _check_sdk() -> None:
    missing = [name for name in _PRIVATE_METHODS if not callable(getattr(Minio, name, None))]
    if missing:
        raise ImportError(
            f"minio SDK lacks {missing}: common/store/_minio_multipart.py targets minio==7.2.20"
        )


_check_sdk()


@dataclass(frozen=True, slots=True)
class RemotePart:
    number: int
    etag: str
    size: int


class MinioMultipart:
    """Blocking multipart calls on one bucket; run them on a worker thread."""

    def __init__(self, client: Minio, bucket: str) -> None:
        self._client = client
        self._bucket = bucket
        # Any: the private methods are untyped; every result is converted right here.
        self._sdk: Any = client

    def create(self, key: str, content_type: str) -> str:
        upload_id: str = self._sdk._create_multipart_upload(
            self._bucket, key, {"Content-Type": content_type}
        )
        return upload_id

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        """Returns the part's etag (without quotes)."""
        etag: str = self._sdk._upload_part(self._bucket, key, data, None, upload_id, number)
        return etag

    def list_parts(self, key: str, upload_id: str) -> list[RemotePart]:
        parts: list[RemotePart] = []
        marker: str | None = None
        while True:  # ListParts pages at 1000; an upload may have 10,000
            result = self._sdk._list_parts(
                self._bucket, key, upload_id, max_parts=1000, part_number_marker=marker
            )
            parts.extend(
                RemotePart(part.part_number, part.etag, part.size or 0) for part in result.parts
            )
            if not result.is_truncated or not result.next_part_number_marker:
                return parts
            marker = result.next_part_number_marker

    def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> str:
        """Returns the object's etag."""
        result = self._sdk._complete_multipart_upload(
            self._bucket, key, upload_id, [Part(number, etag) for number, etag in parts]
        )
        return str(result.etag or "").strip('"')

    def list_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload_id) of uploads in progress under ``prefix`` (MinIO: an exact key)."""
        found: list[tuple[str, str]] = []
        key_marker: str | None = None
        id_marker: str | None = None
        while True:
            result = self._sdk._list_multipart_uploads(
                self._bucket,
                prefix=prefix,
                key_marker=key_marker,
                upload_id_marker=id_marker,
                max_uploads=1000,
            )
            page = [(upload.object_name, upload.upload_id) for upload in result.uploads]
            found.extend(page)
            if not result.is_truncated or not page:
                return found
            # The SDK mis-stores NextUploadIdMarker (7.2.20), so continue from the
            # last upload returned, which is what S3 defines the markers to be.
            key_marker, id_marker = page[-1]

    def abort(self, key: str, upload_id: str) -> None:
        self._sdk._abort_multipart_upload(self._bucket, key, upload_id)
