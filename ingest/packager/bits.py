"""A big-endian bit reader with the Exp-Golomb codes H.264 parameter sets use.

ITU-T H.264 §7.2 (``u(n)``) and §9.1 (``ue(v)``, ``se(v)``). Reading past the end
raises :class:`ConfigError`, so a truncated SPS is one clear error.
"""

from __future__ import annotations

from ingest.packager.errors import ConfigError

# ue(v) longer than this is not a valid H.264 syntax element (values fit in 32 bits).
MAX_LEADING_ZEROS = 31


def unescape_rbsp(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes: 00 00 03 → 00 00 (H.264 §7.4.1)."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class BitReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0  # in bits

    @property
    def bits_left(self) -> int:
        return len(self._data) * 8 - self._pos

    def u(self, count: int) -> int:
        if count > self.bits_left:
            raise ConfigError(f"parameter set truncated: need {count} bits, {self.bits_left} left")
        value = 0
        for _ in range(count):
            byte = self._data[self._pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > MAX_LEADING_ZEROS:
                raise ConfigError("parameter set has an Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)
