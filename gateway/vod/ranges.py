"""HTTP Range requests (RFC 9110 §14), sans I/O: a header and a size in, a decision out.

What we answer:

- ``bytes=a-b``, ``bytes=a-``, ``bytes=-n`` (one range) → :class:`ByteRange`, served as
  206 with ``Content-Range``; an end past the object is clamped (§14.1.2).
- A range that starts at or past the end, a zero-length suffix, or any range of an
  empty object → :class:`Unsatisfiable`: 416 with ``Content-Range: bytes */size``.
- Several ranges (``bytes=0-1,5-6``) → :data:`WHOLE`: the full object with 200. A
  server may ignore Range (§14.2), and no player asks multipart/byteranges of a
  segment; serving it whole is simpler and safe.
- Anything malformed, another unit, or a header past :data:`MAX_HEADER` → :data:`WHOLE`
  (§14.2: an invalid Range header is ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["MAX_HEADER", "WHOLE", "ByteRange", "RangeDecision", "Unsatisfiable", "parse_range"]

MAX_HEADER: Final = 256
_SPEC: Final = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


@dataclass(frozen=True, slots=True)
class _Whole:
    pass


WHOLE: Final = _Whole()
RangeDecision = ByteRange | Unsatisfiable | _Whole


def _single_spec(header: str | None) -> tuple[str, str] | None:
    """(first, last) digits of a well-formed single ``bytes=`` range, else None."""
    if not header or len(header) > MAX_HEADER:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None  # another unit, or multi-range: served whole, see the module doc
    match = _SPEC.match(spec)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    return match.group(1), match.group(2)


def parse_range(header: str | None, size: int) -> RangeDecision:
    """What to serve of a ``size``-byte object for this ``Range`` header."""
    spec = _single_spec(header)
    if spec is None:
        return WHOLE
    first, last = spec
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start, end = int(first), int(last) if last else size - 1
    if last and end < start:
        return WHOLE  # an invalid range-spec: the header is ignored
    if start >= size:
        return Unsatisfiable(size)
    return ByteRange(start, min(end, size - 1))
