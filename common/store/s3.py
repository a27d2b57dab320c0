"""The S3 backend: MinIO in tests and production, any S3 in principle.

The minio SDK is synchronous. Its calls run on this store's own thread pool, whose
size bounds concurrent requests (the job of a semaphore, without also starving
``asyncio.to_thread`` users elsewhere in the process), and the urllib3 pool gets as
many connections as there are threads (the SDK's default of 10 would make threads
queue for sockets). Multipart goes through :class:`MinioMultipart`, the only code
that touches the SDK's private methods.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import functools
import io
import itertools
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.helpers import check_bucket_name
from urllib3.response import BaseHTTPResponse

from common.store._minio_multipart import MinioMultipart
from common.store._s3errors import map_error
from common.store.base import (
    DEFAULT_CHUNK_SIZE,
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
    aiter_body,
    check_expiry,
    check_length,
    check_part_number,
    check_part_order,
    check_range,
)
from common.store.errors import (
    InvalidKey,
    InvalidPart,
    InvalidRange,
    LengthMismatch,
    PartTooSmall,
    StoreError,
    UploadNotFound,
)
from common.store.keys import validate_key, validate_prefix

__all__ = ["S3Store"]

T = TypeVar("T")

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
_LIST_BATCH = 1000  # S3's page size for ListObjectsV2 and DeleteObjects
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """Accept "host:port" (the settings' form) or a URL whose scheme decides TLS."""
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        return parts.netloc, parts.scheme == "https"
    return endpoint, secure


def _stream_part_size(number: int, base: int) -> int:
    # Double every 1000 parts: an upload of unknown length fits S3's 10,000-part
    # cap up to terabytes while small uploads keep small buffers.
    return min(base << ((number - 1) // 1000), MAX_PART_SIZE)


def _date(value: str | None) -> datetime:
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


class _ResponseReader:
    """A GET response as a :class:`BlockingReader`, with errors mapped."""

    def __init__(self, response: BaseHTTPResponse, key: str, bucket: str) -> None:
        self._response = response
        self._key = key
        self._bucket = bucket

    def read(self, size: int, /) -> bytes:
        try:
            return self._response.read(size)
        except Exception as exc:
            raise map_error(exc, self._key, self._bucket) from exc

    def close(self) -> None:
        self._response.close()
        self._response.release_conn()


class S3Store(ObjectStore):
    """Objects in one bucket of an S3 endpoint, addressed path-style."""

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        secure: bool = False,
        max_workers: int = 16,
        part_size: int = DEFAULT_PART_SIZE,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be within {MIN_PART_SIZE}..{MAX_PART_SIZE}")
        try:
            check_bucket_name(bucket, strict=True)
        except ValueError:
            # Refused here, not as a ValueError from the first request.
            raise ValueError(f"invalid S3 bucket name {bucket!r} (3-63 of a-z 0-9 . -)") from None
        host, tls = _split_endpoint(endpoint, secure)
        self.bucket = bucket
        self.region = region
        self.part_size = part_size
        self._http = urllib3.PoolManager(
            maxsize=max_workers,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            # Connection refused gives up after ~1 s (backoff 0, 0.4, 0.8 s) rather
            # than the SDK's default ~6 s, so a dead MinIO is reported promptly.
            retries=urllib3.Retry(
                total=3,
                connect=3,
                read=0,
                status=2,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
            ),
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        # region= given: presigning needs no GetBucketLocation round trip.
        self._client = Minio(
            host,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=tls,
            region=region,
            http_client=self._http,
        )
        # Path-style (http://host/bucket/key): what MinIO expects; untyped in the SDK.
        self._client.disable_virtual_style_endpoint()  # type: ignore[no-untyped-call]
        self._multipart = MinioMultipart(self._client, bucket)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="s3")

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r})"

    # -- plumbing -------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn)
        return await loop.run_in_executor(self._executor, call)

    async def _call(self, fn: Callable[[], T], key: str | None) -> T:
        try:
            return await self._run(fn)
        except Exception as exc:
            mapped = map_error(exc, key, self.bucket)
            if mapped is exc:
                raise
            raise mapped from exc

    async def ensure_ready(self) -> None:
        await self.ensure_bucket()

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (explicit: never implied by a write)."""

        def ensure() -> None:
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket, location=self.region)
            except S3Error as exc:
                # Another process won the race to create it.
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        await self._call(ensure, None)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._http.clear()

    # -- writing ----------------------------------------------------------------------

    async def _put_bytes(self, key: str, data: bytes, content_type: str) -> ObjectInfo:
        # Under part_size the SDK sends one PUT; above, its own multipart (one thread).
        part_size = self.part_size if len(data) <= self.part_size * MAX_PART_NUMBER else 0
        result = await self._call(
            lambda: self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                part_size=part_size,
                num_parallel_uploads=1,
            ),
            key,
        )
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=(result.etag or "").strip('"'),
            content_type=content_type,
            last_modified=_date(result.http_headers.get("Date")),
        )

    async def put(
        self,
        key: str,
        data: Body,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        length: int | None = None,
        durable: bool = True,  # S3 acknowledges only durable writes
    ) -> ObjectInfo:
        validate_key(key)
        if isinstance(data, bytes):
            check_length(key, length, len(data))
            return await self._put_bytes(key, data, content_type)
        return await self._put_stream(key, data, content_type, length)

    async def _put_stream(
        self, key: str, data: Body, content_type: str, length: int | None
    ) -> ObjectInfo:
        """At most one part in memory: one PUT if it all fits, else a multipart upload."""
        buffer = bytearray()
        total = 0
        upload_id: str | None = None
        parts: builtins.list[tuple[int, str]] = []
        try:
            async for chunk in aiter_body(data):
                total += len(chunk)
                if length is not None and total > length:
                    raise LengthMismatch(f"body for {key!r} announced {length} bytes, sent more")
                buffer += chunk
                # ">" not ">=": a full buffer is only a non-last part once more data came.
                while len(buffer) > (size := _stream_part_size(len(parts) + 1, self.part_size)):
                    if upload_id is None:
                        upload_id = await self._call(
                            lambda: self._multipart.create(key, content_type), key
                        )
                    piece = bytes(buffer[:size])
                    del buffer[:size]
                    parts.append(await self._send_part(key, upload_id, len(parts) + 1, piece))
            check_length(key, length, total)
            if upload_id is None:
                return await self._put_bytes(key, bytes(buffer), content_type)
            if buffer:
                parts.append(await self._send_part(key, upload_id, len(parts) + 1, bytes(buffer)))
            current = upload_id
            await self._call(lambda: self._multipart.complete(key, current, parts), key)
            upload_id = None  # completed: nothing left to abort
        except BaseException:
            if upload_id is not None:
                await self._abort_quietly(key, upload_id)
            raise
        return await self.stat(key)

    async def _send_part(
        self, key: str, upload_id: str, number: int, data: bytes
    ) -> tuple[int, str]:
        if number > MAX_PART_NUMBER:
            raise InvalidPart(f"{key!r} needs more than {MAX_PART_NUMBER} parts")
        etag = await self._call(
            lambda: self._multipart.upload_part(key, upload_id, number, data), key
        )
        return number, etag

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        # Best effort: the error that brought us here matters more than this one.
        with contextlib.suppress(Exception):
            await self._call(lambda: self._multipart.abort(key, upload_id), key)

    # -- reading ----------------------------------------------------------------------

    def _describe(self, key: str, response: BaseHTTPResponse) -> tuple[ObjectInfo, int, int]:
        """(whole-object info, first, last byte served) from GET response headers."""
        headers = response.headers
        match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", ""))
        if match:
            first, last, size = (int(group) for group in match.groups())
        else:
            size = int(headers.get("Content-Length", "0"))
            first, last = 0, size - 1
        info = ObjectInfo(
            key=key,
            size=size,
            etag=headers.get("ETag", "").strip('"'),
            content_type=headers.get("Content-Type"),
            last_modified=_date(headers.get("Last-Modified")),
        )
        return info, first, last

    async def _open(
        self, key: str, start: int | None, end: int | None, chunk_size: int
    ) -> ObjectStream:
        validate_key(key)
        if start is not None and end is not None and (start < 0 or end < start):
            raise InvalidRange(f"bad range {start}-{end} for {key!r}")

        def open_response() -> tuple[BaseHTTPResponse, ObjectInfo, int, int]:
            if start is None or end is None:
                response = self._client.get_object(self.bucket, key)
            else:
                response = self._client.get_object(
                    self.bucket, key, offset=start, length=end - start + 1
                )
            try:
                info, first, last = self._describe(key, response)
                if start is not None and end is not None:
                    # S3 clamps an end past the size; the contract refuses it.
                    check_range(key, info.size, start, end)
            except BaseException:
                response.close()
                response.release_conn()
                raise
            return response, info, first, last

        response, info, first, last = await self._call(open_response, key)
        return ObjectStream(
            info=info,
            start=first,
            end=last,
            reader=_ResponseReader(response, key, self.bucket),
            run=self._run,
            chunk_size=chunk_size,
        )

    async def get(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ObjectStream:
        return await self._open(key, None, None, chunk_size)

    async def get_range(
        self, key: str, start: int, end_inclusive: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ObjectStream:
        return await self._open(key, start, end_inclusive, chunk_size)

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = await self._call(lambda: self._client.stat_object(self.bucket, key), key)
        return ObjectInfo(
            key=key,
            size=obj.size or 0,
            etag=(obj.etag or "").strip('"'),
            content_type=obj.content_type,
            last_modified=obj.last_modified or datetime.now(UTC),
        )

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        validate_prefix(prefix)
        # The SDK's generator fetches pages lazily; pull a page per thread hop.
        objects = iter(self._client.list_objects(self.bucket, prefix=prefix, recursive=True))
        while True:
            batch = await self._call(
                lambda: builtins.list(itertools.islice(objects, _LIST_BATCH)), prefix
            )
            for obj in batch:
                if obj.object_name is None or obj.is_dir:
                    continue
                yield ObjectInfo(
                    key=obj.object_name,
                    size=obj.size or 0,
                    etag=(obj.etag or "").strip('"'),
                    content_type=None,
                    last_modified=obj.last_modified or datetime.now(UTC),
                )
            if len(batch) < _LIST_BATCH:
                return

    # -- deleting ---------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self._call(lambda: self._client.remove_object(self.bucket, key), key)

    async def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if not prefix:
            raise InvalidKey("delete_prefix refuses the empty prefix (it would wipe the store)")
        keys = [info.key async for info in self.list(prefix)]

        def remove(batch: builtins.list[str]) -> None:
            errors = builtins.list(
                self._client.remove_objects(self.bucket, [DeleteObject(key) for key in batch])
            )
            if errors:
                raise StoreError(f"could not delete {len(errors)} objects, first: {errors[0]}")

        for offset in range(0, len(keys), _LIST_BATCH):
            batch = keys[offset : offset + _LIST_BATCH]
            await self._call(functools.partial(remove, batch), prefix)
        return len(keys)

    async def presigned_get_url(self, key: str, expires_s: int = 3600) -> str:
        validate_key(key)
        check_expiry(expires_s)
        # Pure computation when the region is known (~40 us): no thread hop needed.
        try:
            return self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_s)
            )
        except Exception as exc:
            raise map_error(exc, key, self.bucket) from exc

    # -- multipart --------------------------------------------------------------------

    async def create_multipart(
        self, key: str, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> MultipartUpload:
        validate_key(key)
        upload_id = await self._call(lambda: self._multipart.create(key, content_type), key)
        return MultipartUpload(upload_id=upload_id, key=key)

    async def upload_part(
        self,
        upload: MultipartUpload,
        part_number: int,
        data: Body,
        length: int | None = None,
    ) -> PartInfo:
        check_part_number(part_number)
        validate_key(upload.key)
        if isinstance(data, bytes):
            body = data
        else:
            # The SDK signs a part's bytes, so the part is gathered in memory.
            limit = MAX_PART_SIZE if length is None else min(length, MAX_PART_SIZE)
            gathered = bytearray()
            async for chunk in aiter_body(data):
                gathered += chunk
                if len(gathered) > limit:
                    raise LengthMismatch(
                        f"part {part_number} of {upload.key!r} is longer than {limit} bytes"
                    )
            body = bytes(gathered)
        check_length(upload.key, length, len(body))
        _, etag = await self._send_part(upload.key, upload.upload_id, part_number, body)
        return PartInfo(number=part_number, etag=etag, size=len(body))

    async def list_parts(self, upload: MultipartUpload) -> builtins.list[PartInfo]:
        validate_key(upload.key)
        remote = await self._call(
            lambda: self._multipart.list_parts(upload.key, upload.upload_id), upload.key
        )
        return [PartInfo(number=p.number, etag=p.etag, size=p.size) for p in remote]

    async def complete_multipart(
        self, upload: MultipartUpload, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        validate_key(upload.key)
        check_part_order(parts)
        # Sizes are S3's to check (EntityTooSmall), from what it really stored.
        pairs = [(part.number, part.etag) for part in parts]
        await self._call(
            lambda: self._multipart.complete(upload.key, upload.upload_id, pairs), upload.key
        )
        return await self.stat(upload.key)

    async def list_multipart(self, key: str) -> builtins.list[MultipartUpload]:
        validate_key(key)
        found = await self._call(lambda: self._multipart.list_uploads(key), key)
        # The prefix "a/b" would also match "a/bc" on AWS: keep the exact key only.
        uploads = [
            MultipartUpload(upload_id=upload_id, key=k) for k, upload_id in found if k == key
        ]
        return sorted(uploads, key=lambda upload: upload.upload_id)

    async def abort_multipart(self, upload: MultipartUpload) -> None:
        validate_key(upload.key)
        try:
            await self._call(
                lambda: self._multipart.abort(upload.key, upload.upload_id), upload.key
            )
        except UploadNotFound:
            return  # aborting twice is fine (tus DELETE may be retried)

    async def compose(
        self,
        dest: str,
        sources: Sequence[str],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        validate_key(dest)
        for source in sources:
            validate_key(source)
        if not sources:
            raise InvalidPart("compose needs at least one source")
        compose_sources = [ComposeSource(self.bucket, source) for source in sources]

        def compose() -> None:
            try:
                self._client.compose_object(
                    self.bucket, dest, compose_sources, metadata={"Content-Type": content_type}
                )
            except ValueError as exc:
                # The SDK checks source sizes itself, before any upload.
                if "must be greater than" in str(exc):
                    raise PartTooSmall(f"compose {dest!r}: {exc}") from exc
                raise InvalidPart(f"compose {dest!r}: {exc}") from exc

        await self._call(compose, dest)
        return await self.stat(dest)
