"""Upload-Metadata: the fields we keep and every abuse refused with 400 (RELIABILITY.md)."""

from __future__ import annotations

import base64

import pytest

from gateway.tus.errors import BadRequest
from gateway.tus.metadata import (
    MAX_METADATA_BYTES,
    UploadMetadata,
    check_filename,
    encode_metadata,
    parse_metadata,
)

pytestmark = pytest.mark.unit


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def test_absent_or_empty_metadata() -> None:
    assert parse_metadata(None) == UploadMetadata()
    assert parse_metadata("") == UploadMetadata()


def test_the_fields_we_keep_and_the_ones_we_ignore() -> None:
    description = b64("line one\nline two\twith a tab")
    header = (
        f"filename {b64('Holiday 2026.mp4')},title {b64('Été à Séoul 🎬')},"
        f"description {description},filetype {b64('video/mp4')},is_confidential"
    )
    assert parse_metadata(header) == UploadMetadata(
        filename="Holiday 2026.mp4",
        title="Été à Séoul 🎬",
        description="line one\nline two\twith a tab",
    )


def test_name_is_an_alias_of_filename() -> None:
    assert parse_metadata(f"name {b64('clip.webm')}").filename == "clip.webm"
    assert parse_metadata(f"name {b64('a.mp4')},filename {b64('a.mp4')}").filename == "a.mp4"
    with pytest.raises(BadRequest, match="disagree"):
        parse_metadata(f"name {b64('a.mp4')},filename {b64('b.mp4')}")


def test_round_trip() -> None:
    value = UploadMetadata(filename="x.mp4", title="T", description="d\ne")
    assert parse_metadata(encode_metadata(value)) == value


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("filename !!!", "not valid base64"),
        ("filename YWJj=", "base64"),  # bad padding
        ("filename YWJjZA", "base64"),  # missing padding
        ("filename YWJjZR==", "not canonical"),  # non-zero pad bits
        ("filename " + b64(b"\xff\xfe"), "not UTF-8"),
        (f"title {b64('a')},title {b64('b')}", "appears twice"),
        (f"filename {b64('a')},,title {b64('b')}", "empty pair"),
        (f"file name {b64('a')}", "more than one space"),
        (f"fïlename {b64('a')}", "printable ASCII"),
        ("title YQ==\r\nX-Injected: 1", "control characters"),
        ("title YQ==\nfoo", "control characters"),
        (f"filename {b64('../../etc/passwd')}", "not a path"),
        (f"filename {b64('..')}", "only dots"),
        (f"filename {b64('.')}", "only dots"),
        (f"filename {b64('dir/clip.mp4')}", "not a path"),
        ("filename " + b64("C:\\clip.mp4"), "not a path"),
        ("filename " + b64("clip\r\n.mp4"), "control characters"),
        ("filename " + b64("clip\x00.mp4"), "control characters"),
        (f"filename {b64('a' * 256)}", "255 bytes"),
        ("title " + b64("line\none"), "control characters"),
        (f"title {b64('t' * 201)}", "200 characters"),
        (f"description {b64('d' * 5001)}", "5000 characters"),
        ("description " + b64("bell\x07"), "control characters"),
        ("description " + b64("cr\r\nlf"), "control characters"),
        ("description " + b64("\u2028"), "control characters"),
        (",".join(f"k{i} {b64('v')}" for i in range(33)), "more than 32 pairs"),
        (f"title {b64('x' * (MAX_METADATA_BYTES))}", f"larger than {MAX_METADATA_BYTES}"),
    ],
)
def test_metadata_abuse_is_400(header: str, message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_metadata(header)
    assert exc.value.status == 400
    assert message in exc.value.detail


@pytest.mark.parametrize(
    "name", ["clip.mp4", "..clip.mp4", "clip..mp4", "ファイル.webm", "a b.mov"]
)
def test_ordinary_filenames_pass(name: str) -> None:
    assert check_filename(name) == name
