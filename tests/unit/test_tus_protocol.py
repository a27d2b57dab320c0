"""The sans-IO tus core: every header rule and the exact status of every refusal."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from gateway.tus import protocol
from gateway.tus.checksum import parse_checksum
from gateway.tus.errors import (
    BadRequest,
    ChecksumMismatch,
    TooLarge,
    TusError,
    UploadNotFound,
    VersionUnsupported,
    WrongContentType,
)
from gateway.tus.metadata import UploadMetadata

pytestmark = pytest.mark.unit

MAX = 1000
OCTETS = "application/offset+octet-stream"


def headers(**values: str) -> dict[str, str]:
    base = {"tus-resumable": "1.0.0"}
    base.update({name.replace("_", "-").lower(): value for name, value in values.items()})
    return base


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def status(exc: pytest.ExceptionInfo[TusError]) -> int:
    return exc.value.status


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "1.0.0 ", "2.0.0"])
def test_wrong_or_missing_tus_resumable_is_412_with_the_versions_we_speak(
    version: str | None,
) -> None:
    values = {} if version is None else {"tus-resumable": version}
    with pytest.raises(VersionUnsupported) as exc:
        protocol.check_version(values)
    assert status(exc) == 412
    assert exc.value.headers == {"Tus-Version": "1.0.0"}


def test_creation_with_a_length() -> None:
    request = protocol.parse_creation(headers(upload_length="10"), max_size=MAX)
    assert request == protocol.CreateRequest(
        length=10, metadata=UploadMetadata(), with_body=False, checksum=None
    )


def test_creation_with_deferred_length() -> None:
    request = protocol.parse_creation(headers(upload_defer_length="1"), max_size=MAX)
    assert request.length is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "Upload-Length or Upload-Defer-Length"),
        ({"upload_length": "10", "upload_defer_length": "1"}, "not both"),
        ({"upload_defer_length": "0"}, "must be 1"),
        ({"upload_defer_length": "yes"}, "must be 1"),
        ({"upload_length": "-1"}, "non-negative integer"),
        ({"upload_length": "+5"}, "non-negative integer"),
        ({"upload_length": "1_0"}, "non-negative integer"),
        ({"upload_length": "0x10"}, "non-negative integer"),
        ({"upload_length": "1" * 25}, "non-negative integer"),
        ({"upload_length": "10", "upload_concat": "final;/files/../../etc/passwd"}, "Concat"),
        ({"upload_length": "10", "upload_concat": "partial"}, "Concat"),
    ],
)
def test_creation_refusals_are_400(values: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        protocol.parse_creation(headers(**values), max_size=MAX)
    assert status(exc) == 400
    assert message in exc.value.detail


def test_upload_length_above_the_maximum_is_413() -> None:
    assert protocol.parse_creation(headers(upload_length=str(MAX)), max_size=MAX).length == MAX
    with pytest.raises(TooLarge) as exc:
        protocol.parse_creation(headers(upload_length=str(MAX + 1)), max_size=MAX)
    assert status(exc) == 413


def test_creation_with_upload_needs_the_offset_content_type() -> None:
    request = protocol.parse_creation(
        headers(upload_length="10", content_type=OCTETS, content_length="4"), max_size=MAX
    )
    assert request.with_body
    with pytest.raises(WrongContentType) as exc:
        protocol.parse_creation(
            headers(upload_length="10", content_type="text/plain", content_length="4"),
            max_size=MAX,
        )
    assert status(exc) == 415
    # An empty creation body needs no content type.
    plain = protocol.parse_creation(
        headers(upload_length="10", content_type="text/plain", content_length="0"), max_size=MAX
    )
    assert not plain.with_body


def test_patch_headers() -> None:
    digest = hashlib.sha256(b"x").digest()
    request = protocol.parse_patch(
        headers(
            content_type=f"{OCTETS}; charset=whatever",
            upload_offset="5",
            upload_checksum=f"sha256 {b64(digest)}",
        ),
        max_size=MAX,
    )
    assert request.offset == 5
    assert request.length is None
    assert request.checksum is not None
    assert request.checksum.digest == digest


@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream", "text/plain", "multipart/form-data"]
)
def test_patch_with_another_content_type_is_415(content_type: str | None) -> None:
    values = {"upload_offset": "0"}
    if content_type is not None:
        values["content_type"] = content_type
    with pytest.raises(WrongContentType) as exc:
        protocol.parse_patch(headers(**values), max_size=MAX)
    assert status(exc) == 415


@pytest.mark.parametrize("offset", [None, "", "-3", "1.5", "ten", " 4 2"])
def test_patch_with_a_bad_offset_is_400(offset: str | None) -> None:
    values = {"content_type": OCTETS}
    if offset is not None:
        values["upload_offset"] = offset
    with pytest.raises(BadRequest):
        protocol.parse_patch(headers(**values), max_size=MAX)


def test_patch_declaring_a_length_above_the_maximum_is_413() -> None:
    with pytest.raises(TooLarge):
        protocol.parse_patch(
            headers(content_type=OCTETS, upload_offset="0", upload_length=str(MAX + 1)),
            max_size=MAX,
        )


def test_patch_checks_the_version_before_anything_else() -> None:
    with pytest.raises(VersionUnsupported):
        protocol.parse_patch({"content-type": "text/plain"}, max_size=MAX)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("md5 " + b64(b"0" * 16), "not supported"),
        ("crc32 AAAAAA==", "not supported"),
        ("sha1 !!notbase64!!", "not valid base64"),
        ("sha1 " + b64(b"short"), "20 bytes"),
        ("sha256 " + b64(b"0" * 20), "32 bytes"),
    ],
)
def test_bad_checksum_headers_are_400(value: str, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_checksum(value)
    assert message in exc.value.detail


def test_checksum_verification() -> None:
    checksum = parse_checksum("SHA1 " + b64(hashlib.sha1(b"abc").digest()))
    assert checksum is not None
    hasher = checksum.hasher()
    hasher.update(b"abc")
    checksum.verify(hasher)
    assert checksum.label() == "sha1:" + hashlib.sha1(b"abc").hexdigest()
    wrong = checksum.hasher()
    wrong.update(b"abd")
    with pytest.raises(ChecksumMismatch) as exc:
        checksum.verify(wrong)
    assert exc.value.status == 460


@pytest.mark.parametrize(
    "value",
    [
        "../../etc/passwd",
        "..%2F..%2Fetc",
        "%2e%2e",
        "0123456789abcdef0123456789abcde",  # 31
        "0123456789abcdef0123456789abcdef0",  # 33
        "0123456789ABCDEF0123456789ABCDEF",  # upper case: not ours
        "0123456789abcdef0123456789abcde\x00",
        "",
    ],
)
def test_ids_that_are_not_ours_are_404(value: str) -> None:
    with pytest.raises(UploadNotFound) as exc:
        protocol.parse_upload_id(value)
    assert exc.value.status == 404


def test_new_ids_parse() -> None:
    upload_id = protocol.new_upload_id()
    assert protocol.parse_upload_id(upload_id) == upload_id


def test_options_advertise_the_server() -> None:
    assert protocol.options_headers(MAX) == {
        "Tus-Resumable": "1.0.0",
        "Tus-Version": "1.0.0",
        "Tus-Extension": (
            "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
        ),
        "Tus-Max-Size": str(MAX),
        "Tus-Checksum-Algorithm": "sha1,sha256",
    }


def test_head_headers() -> None:
    expires = datetime(2026, 5, 21, 12, 30, 5, tzinfo=UTC)
    values = protocol.head_headers(
        offset=3, length=10, metadata=UploadMetadata(filename="a.mp4"), expires=expires
    )
    assert values["Upload-Offset"] == "3"
    assert values["Upload-Length"] == "10"
    assert values["Cache-Control"] == "no-store"
    assert values["Upload-Expires"] == "Thu, 21 May 2026 12:30:05 GMT"
    assert values["Upload-Metadata"] == "filename " + b64(b"a.mp4")
    deferred = protocol.head_headers(offset=0, length=None, metadata=UploadMetadata(), expires=None)
    assert deferred["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in deferred
    assert "Upload-Metadata" not in deferred
    assert "Upload-Expires" not in deferred


def test_created_and_patch_headers() -> None:
    created = protocol.created_headers("http://h/files/x", offset=None, expires=None)
    assert created == {"Tus-Resumable": "1.0.0", "Location": "http://h/files/x"}
    with_body = protocol.created_headers("http://h/files/x", offset=4, expires=None)
    assert with_body["Upload-Offset"] == "4"
    assert protocol.patch_headers(offset=7, expires=None) == {
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "7",
    }
