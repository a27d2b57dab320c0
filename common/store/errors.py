"""Errors raised by every object-store backend.

Callers catch these, never a backend's own exceptions (minio's ``S3Error``,
``OSError``): both backends map their failures onto the same tree, so code written
against the folder store behaves the same on MinIO.

    StoreError                   base class; also "unexpected backend answer"
    ├── InvalidKey               key or prefix refused before any I/O (traversal, NUL, ...)
    ├── ObjectNotFound           no object under that key
    ├── InvalidRange             byte range outside the object
    ├── LengthMismatch           the body did not have the announced ``length``
    ├── UploadNotFound           unknown, completed or aborted multipart upload
    ├── InvalidPart              complete/compose refused: missing part, wrong etag, order
    │   └── PartTooSmall         a part other than the last is under MIN_PART_SIZE
    └── StoreUnavailable         the backend cannot be reached or failed (network, 5xx, disk)
"""

# The names are the public contract (no "Error" suffix, like httpx's NotFound-style
# names read at call sites: `except ObjectNotFound`).
# ruff: noqa: N818

from __future__ import annotations

__all__ = [
    "InvalidKey",
    "InvalidPart",
    "InvalidRange",
    "LengthMismatch",
    "ObjectNotFound",
    "PartTooSmall",
    "StoreError",
    "StoreUnavailable",
    "UploadNotFound",
]


class StoreError(Exception):
    """Base of every object-store error."""


class InvalidKey(StoreError, ValueError):
    """The key or prefix is not allowed (checked before touching the backend)."""


class ObjectNotFound(StoreError, KeyError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the key
        return f"object not found: {self.key!r}"


class InvalidRange(StoreError, ValueError):
    """The requested byte range does not lie inside the object."""


class LengthMismatch(StoreError, ValueError):
    """The body was shorter or longer than the ``length`` the caller announced."""


class UploadNotFound(StoreError):
    """The multipart upload does not exist (never created, completed or aborted)."""


class InvalidPart(StoreError, ValueError):
    """A multipart complete (or compose) was refused because of its parts."""


class PartTooSmall(InvalidPart):
    """S3 rule: every part except the last must be at least ``MIN_PART_SIZE`` bytes."""


class StoreUnavailable(StoreError):
    """The backend could not be reached or failed; retrying later may work."""
