"""``Upload-Metadata`` (tus 1.0 §Upload-Metadata) and the fields VideoPick reads from it.

Wire format: comma-separated pairs ``key base64(value)``; the key has no spaces or
commas and is unique; the value may be empty (then the space may be left out). We
keep ``filename`` (or ``name``, what Uppy sends), ``title`` and ``description``; other
keys (``filetype``, ``relativePath``…) are checked for syntax and then ignored.

Every rule below answers 400 with the reason (RELIABILITY.md, "tus uploads"):
a header over 32 KiB, more than 32 pairs, a bad key, a duplicate key, base64 that is
not canonical, values that are not UTF-8, control characters (CR, LF and the rest;
the description may hold LF and TAB: it is multi-line text), a filename that is a
path (``/``, ``\\``, ``..``) or longer than 255 bytes, a title over 200 characters,
a description over 5000.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from gateway.tus.errors import BadRequest

__all__ = [
    "MAX_DESCRIPTION_CHARS",
    "MAX_FILENAME_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_TITLE_CHARS",
    "UploadMetadata",
    "check_description",
    "check_filename",
    "check_title",
    "encode_metadata",
    "parse_metadata",
]

# uvicorn refuses a header block over 64 KiB (gateway/__main__.py); ours is stricter.
MAX_METADATA_BYTES: Final = 32 * 1024
MAX_PAIRS: Final = 32
MAX_KEY_CHARS: Final = 64
MAX_FILENAME_BYTES: Final = 255  # NAME_MAX on common filesystems
MAX_TITLE_CHARS: Final = 200
MAX_DESCRIPTION_CHARS: Final = 5000

# Printable ASCII without space and comma (tus: "MUST NOT contain spaces and commas").
_KEY: Final = re.compile(r"[!-+\--~]{1,64}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BUT_NEWLINE_TAB: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_FILENAME_KEYS: Final = ("filename", "name")


@dataclass(frozen=True, slots=True)
class UploadMetadata:
    filename: str = ""
    title: str = ""
    description: str = ""


def _decode_value(key: str, encoded: str) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"Upload-Metadata: the value of {key!r} is not valid base64") from None
    # Canonical only: b64decode accepts some non-canonical forms (stray padding bits).
    if base64.b64encode(raw).decode("ascii") != encoded:
        raise BadRequest(f"Upload-Metadata: the value of {key!r} is not canonical base64")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"Upload-Metadata: the value of {key!r} is not UTF-8 text") from None


def _split_pairs(header: str) -> dict[str, str]:
    if len(header.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise BadRequest(f"Upload-Metadata is larger than {MAX_METADATA_BYTES} bytes")
    if _CONTROL.search(header):
        raise BadRequest("Upload-Metadata contains control characters")
    pairs: dict[str, str] = {}
    items = header.split(",")
    if len(items) > MAX_PAIRS:
        raise BadRequest(f"Upload-Metadata has more than {MAX_PAIRS} pairs")
    for item in items:
        stripped = item.strip(" ")
        if not stripped:
            raise BadRequest("Upload-Metadata has an empty pair")
        key, _, encoded = stripped.partition(" ")
        if not _KEY.fullmatch(key):
            raise BadRequest(
                f"Upload-Metadata key {key[:MAX_KEY_CHARS]!r} must be 1-{MAX_KEY_CHARS} "
                "printable ASCII characters without spaces or commas"
            )
        if " " in encoded:
            raise BadRequest(f"Upload-Metadata pair {key!r} has more than one space")
        if key in pairs:
            raise BadRequest(f"Upload-Metadata key {key!r} appears twice")
        pairs[key] = _decode_value(key, encoded) if encoded else ""
    return pairs


def check_filename(value: str) -> str:
    if _CONTROL.search(value):
        raise BadRequest("filename contains control characters (CR, LF, NUL…)")
    if "/" in value or "\\" in value:
        raise BadRequest("filename must be a name, not a path (no '/' or '\\')")
    # With separators refused, only an all-dots name can still mean "this/parent folder".
    if value and value.strip(".") == "":
        raise BadRequest("filename must not be '.', '..' or only dots")
    if len(value.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise BadRequest(f"filename is longer than {MAX_FILENAME_BYTES} bytes")
    return value


def check_title(value: str) -> str:
    if _CONTROL.search(value):
        raise BadRequest("title contains control characters (CR, LF, NUL…)")
    if len(value) > MAX_TITLE_CHARS:
        raise BadRequest(f"title is longer than {MAX_TITLE_CHARS} characters")
    return value.strip()


def check_description(value: str) -> str:
    if _CONTROL_BUT_NEWLINE_TAB.search(value):
        raise BadRequest("description contains control characters (only LF and TAB are allowed)")
    if len(value) > MAX_DESCRIPTION_CHARS:
        raise BadRequest(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return value


def parse_metadata(header: str | None) -> UploadMetadata:
    """The VideoPick fields of an ``Upload-Metadata`` header; raises :class:`BadRequest`."""
    if header is None or header.strip() == "":
        return UploadMetadata()
    pairs = _split_pairs(header)
    names = [pairs[key] for key in _FILENAME_KEYS if key in pairs]
    if len(set(names)) > 1:
        raise BadRequest("Upload-Metadata: 'filename' and 'name' disagree")
    return UploadMetadata(
        filename=check_filename(names[0]) if names else "",
        title=check_title(pairs.get("title", "")),
        description=check_description(pairs.get("description", "")),
    )


def encode_metadata(metadata: UploadMetadata) -> str:
    """The header value a HEAD answers with (tus: the Server MUST include it if it was set)."""
    pairs = []
    for key, value in (
        ("filename", metadata.filename),
        ("title", metadata.title),
        ("description", metadata.description),
    ):
        if value:
            pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}")
    return ",".join(pairs)
