"""Key and prefix rules shared by every backend.

A key is checked before any I/O, so a hostile key can never reach a filesystem path
or an S3 request. Both backends apply the *same* rules, which also forbids a few keys
S3 itself would take but a folder cannot represent ("a//b", "a/./b", "dir/"): code
that works on the folder store then works on MinIO, and the reverse.
"""

from __future__ import annotations

from common.store.errors import InvalidKey

__all__ = ["MAX_KEY_BYTES", "MAX_SEGMENT_BYTES", "validate_key", "validate_prefix"]

# S3 object keys are at most 1024 bytes of UTF-8 (AWS "Creating object key names").
MAX_KEY_BYTES = 1024
# NAME_MAX on ext4/xfs/btrfs/apfs: a longer segment could not be a folder-store file.
MAX_SEGMENT_BYTES = 255


def _check_text(value: str, what: str) -> None:
    for ch in value:
        code = ord(ch)
        # NUL truncates C paths; other controls break logs, headers and XML listings.
        if code < 0x20 or code == 0x7F:
            raise InvalidKey(f"{what} {value!r} contains control character {code:#04x}")
        if ch == "\\":
            # A separator on Windows and a traversal vector through some proxies.
            raise InvalidKey(f"{what} {value!r} contains a backslash")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise InvalidKey(f"{what} {value!r} is not valid UTF-8") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} is {len(encoded)} bytes; the limit is {MAX_KEY_BYTES}")
    if value.startswith("/"):
        raise InvalidKey(f"{what} {value!r} must not start with '/'")


def _check_segment(segment: str, value: str, what: str) -> None:
    if segment == "":
        raise InvalidKey(f"{what} {value!r} has an empty path segment")
    if segment in {".", ".."}:
        raise InvalidKey(f"{what} {value!r} has a {segment!r} segment")
    if segment.startswith("."):
        # Hidden names are the folder store's bookkeeping (temp files, .multipart/).
        raise InvalidKey(f"{what} {value!r} has a hidden segment {segment!r}")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"{what} {value!r} has a segment over {MAX_SEGMENT_BYTES} bytes")


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key, else raise :class:`InvalidKey`."""
    if not isinstance(key, str) or key == "":
        raise InvalidKey("object key must be a non-empty string")
    _check_text(key, "key")
    for segment in key.split("/"):
        _check_segment(segment, key, "key")
    return key


def validate_prefix(prefix: str) -> str:
    """Like :func:`validate_key`, but "" (everything) and a trailing '/' are allowed.

    The last segment may be partial ("videos/ab" matches "videos/abc/x"), as in S3.
    """
    if not isinstance(prefix, str):
        raise InvalidKey("prefix must be a string")
    if prefix == "":
        return prefix
    _check_text(prefix, "prefix")
    segments = prefix.split("/")
    if segments[-1] == "":
        segments.pop()  # "videos/" is the folder "videos"
    for segment in segments:
        _check_segment(segment, prefix, "prefix")
    return prefix
