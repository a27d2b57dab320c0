"""The tus 1.0 protocol core, sans-IO: request headers in, typed requests or errors out,
response headers out. No web framework, no database, no store: the engine and the
routes move the bytes. Section names refer to https://tus.io/protocols/resumable-upload.

Implemented: core; extensions creation, creation-with-upload, creation-defer-length,
termination, checksum (sha1, sha256), expiration. Not implemented: concatenation
(``Upload-Concat`` is refused with 400, so its ids can never reach a key).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Final

from gateway.tus.checksum import ALGORITHMS, Checksum, parse_checksum
from gateway.tus.errors import (
    BadRequest,
    TooLarge,
    UploadNotFound,
    VersionUnsupported,
    WrongContentType,
)
from gateway.tus.metadata import UploadMetadata, encode_metadata, parse_metadata

__all__ = [
    "EXTENSIONS",
    "OFFSET_OCTET_STREAM",
    "TUS_RESUMABLE",
    "CreateRequest",
    "PatchRequest",
    "check_version",
    "created_headers",
    "format_expires",
    "head_headers",
    "media_type",
    "new_upload_id",
    "options_headers",
    "parse_creation",
    "parse_patch",
    "parse_upload_id",
    "patch_headers",
    "tus_headers",
]

Headers = Mapping[str, str]  # lower-case names (litestar's Headers is case-insensitive)

TUS_RESUMABLE: Final = "1.0.0"
# §Tus-Version: every version we speak, preferred first.
TUS_VERSIONS: Final = ("1.0.0",)
EXTENSIONS: Final = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
)
# §PATCH: "All PATCH requests MUST use Content-Type: application/offset+octet-stream".
OFFSET_OCTET_STREAM: Final = "application/offset+octet-stream"
# Digits only: int() would also take " 12", "+12" and "1_000".
_NUMBER: Final = re.compile(r"[0-9]{1,19}")
# Ids are ours (uuid4 hex): anything else — "../x", "%2e%2e", a Upload-Concat URL —
# is simply not an upload, and never gets near a key or a query.
_UPLOAD_ID: Final = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class CreateRequest:
    length: int | None  # None: Upload-Defer-Length: 1
    metadata: UploadMetadata
    with_body: bool  # creation-with-upload: the POST carries the first chunk
    checksum: Checksum | None


@dataclass(frozen=True, slots=True)
class PatchRequest:
    offset: int
    length: int | None  # a deferred upload's length, declared on a PATCH
    checksum: Checksum | None


def new_upload_id() -> str:
    return uuid.uuid4().hex


def parse_upload_id(value: str) -> str:
    if not _UPLOAD_ID.fullmatch(value):
        raise UploadNotFound("no such upload")
    return value


def tus_headers() -> dict[str, str]:
    """§Tus-Resumable: "MUST be included in every request and response except OPTIONS"."""
    return {"Tus-Resumable": TUS_RESUMABLE}


def check_version(headers: Headers) -> None:
    """§Tus-Resumable: a version we do not speak is 412 with the ones we do."""
    version = headers.get("tus-resumable")
    if version != TUS_RESUMABLE:
        shown = "missing" if version is None else repr(version[:32])
        raise VersionUnsupported(
            f"Tus-Resumable is {shown}; this server speaks tus {', '.join(TUS_VERSIONS)}",
            headers={"Tus-Version": ",".join(TUS_VERSIONS)},
        )


def media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _number(headers: Headers, name: str) -> int | None:
    value = headers.get(name.lower())
    if value is None:
        return None
    if not _NUMBER.fullmatch(value.strip()):
        raise BadRequest(f"{name} must be a non-negative integer, got {value[:32]!r}")
    return int(value)


def _length(headers: Headers, max_size: int) -> int | None:
    length = _number(headers, "Upload-Length")
    if length is not None and length > max_size:
        # §Tus-Max-Size: "the Server MUST respond with 413" — before reading any body.
        raise TooLarge(
            f"Upload-Length {length} is above this server's Tus-Max-Size of {max_size} bytes"
        )
    return length


def _refuse_concat(headers: Headers) -> None:
    if headers.get("upload-concat") is not None:
        raise BadRequest("the concatenation extension is not supported (Upload-Concat)")


def _body_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not _NUMBER.fullmatch(value.strip()):
        raise BadRequest("Content-Length must be a non-negative integer")
    return int(value)


def parse_creation(headers: Headers, *, max_size: int) -> CreateRequest:
    """POST /files/ (creation §POST, creation-defer-length, creation-with-upload)."""
    check_version(headers)
    _refuse_concat(headers)
    length = _length(headers, max_size)
    defer = headers.get("upload-defer-length")
    if defer is not None:
        if defer.strip() != "1":
            # creation-defer-length: "its value MUST be 1".
            raise BadRequest("Upload-Defer-Length must be 1")
        if length is not None:
            raise BadRequest("send Upload-Length or Upload-Defer-Length, not both")
    elif length is None:
        raise BadRequest("Upload-Length or Upload-Defer-Length: 1 is required")
    metadata = parse_metadata(headers.get("upload-metadata"))
    body_length = _body_length(headers)
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    has_body = chunked or bool(body_length)
    with_body = media_type(headers) == OFFSET_OCTET_STREAM
    if has_body and not with_body:
        # creation-with-upload: the first chunk needs the PATCH content type.
        raise WrongContentType(f"a creation body must be sent as {OFFSET_OCTET_STREAM}")
    return CreateRequest(
        length=length,
        metadata=metadata,
        with_body=with_body and has_body,
        checksum=parse_checksum(headers.get("upload-checksum")) if with_body else None,
    )


def parse_patch(headers: Headers, *, max_size: int) -> PatchRequest:
    """PATCH /files/{id} (core §PATCH): version, content type, offset, checksum."""
    check_version(headers)
    if media_type(headers) != OFFSET_OCTET_STREAM:
        raise WrongContentType(f"PATCH bodies must be sent as {OFFSET_OCTET_STREAM}")
    _refuse_concat(headers)
    offset = _number(headers, "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    return PatchRequest(
        offset=offset,
        length=_length(headers, max_size),
        checksum=parse_checksum(headers.get("upload-checksum")),
    )


def format_expires(when: datetime) -> str:
    """expiration §Upload-Expires: an RFC 9110 HTTP-date."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def options_headers(max_size: int) -> dict[str, str]:
    """§OPTIONS: what this server speaks. Tus-Resumable is optional here; we send it."""
    return {
        **tus_headers(),
        "Tus-Version": ",".join(TUS_VERSIONS),
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(max_size),
        "Tus-Checksum-Algorithm": ",".join(ALGORITHMS),
    }


def _expiry(expires: datetime | None) -> dict[str, str]:
    return {"Upload-Expires": format_expires(expires)} if expires is not None else {}


def created_headers(
    location: str, *, offset: int | None, expires: datetime | None
) -> dict[str, str]:
    """creation §POST 201: Location; creation-with-upload adds the Upload-Offset reached."""
    headers = {**tus_headers(), "Location": location, **_expiry(expires)}
    if offset is not None:
        headers["Upload-Offset"] = str(offset)
    return headers


def head_headers(
    *, offset: int, length: int | None, metadata: UploadMetadata, expires: datetime | None
) -> dict[str, str]:
    """§HEAD: "MUST always include the Upload-Offset header" and "MUST prevent the client
    and/or proxies from caching the response by adding Cache-Control: no-store"."""
    headers = {**tus_headers(), "Upload-Offset": str(offset), "Cache-Control": "no-store"}
    if length is None:
        headers["Upload-Defer-Length"] = "1"  # creation-defer-length
    else:
        headers["Upload-Length"] = str(length)
    encoded = encode_metadata(metadata)
    if encoded:
        headers["Upload-Metadata"] = encoded
    headers.update(_expiry(expires))
    return headers


def patch_headers(*, offset: int, expires: datetime | None) -> dict[str, str]:
    """§PATCH 204: "MUST include the Upload-Offset header containing the new offset"."""
    return {**tus_headers(), "Upload-Offset": str(offset), **_expiry(expires)}
