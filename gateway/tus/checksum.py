"""``Upload-Checksum`` (tus 1.0 checksum extension): parse, hash, verify.

``Upload-Checksum: <algorithm> <base64 digest>``. An algorithm we do not list in
``Tus-Checksum-Algorithm`` is a 400 (the extension: "the Server MUST respond with
400 Bad Request if the checksum algorithm is not supported"); a digest that differs
is 460 and the chunk is discarded (the extension: "the Server MUST NOT append the
chunk").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Final, Protocol

from gateway.tus.errors import BadRequest, ChecksumMismatch

__all__ = ["ALGORITHMS", "Checksum", "Hasher", "parse_checksum"]

# name → (hashlib constructor name, digest bytes)
ALGORITHMS: Final[dict[str, tuple[str, int]]] = {"sha1": ("sha1", 20), "sha256": ("sha256", 32)}


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str
    digest: bytes

    def hasher(self) -> Hasher:
        return hashlib.new(ALGORITHMS[self.algorithm][0])

    def verify(self, hasher: Hasher) -> None:
        if hasher.digest() != self.digest:
            raise ChecksumMismatch(
                f"the chunk's {self.algorithm} differs from Upload-Checksum; it was discarded"
            )

    def label(self) -> str:
        """``sha256:<hex>``: the form ``chunk.uploaded`` carries."""
        return f"{self.algorithm}:{self.digest.hex()}"


def parse_checksum(header: str | None) -> Checksum | None:
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        supported = ",".join(ALGORITHMS)
        raise BadRequest(
            f"Upload-Checksum algorithm {algorithm[:32]!r} is not supported (use {supported})"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum: the digest is not valid base64") from None
    expected = ALGORITHMS[algorithm][1]
    if len(digest) != expected:
        raise BadRequest(
            f"Upload-Checksum: a {algorithm} digest is {expected} bytes, got {len(digest)}"
        )
    return Checksum(algorithm, digest)
