"""The RTMP handshake (RTMP spec 5.2), server side, plain and digest ("Flash") variants.

Plain (5.2.2-5.2.4): the client sends C0 (version 3) and C1 (time, zero, 1528 random
bytes); the server answers S0, S1 (its own random) and S2 (an echo of C1); the client
finishes with C2, an echo of S1.

Digest: Flash Player, ffmpeg and librtmp put an HMAC-SHA256 digest inside C1 (keyed
with the first 30 bytes of the "Genuine Adobe Flash Player 001" key) and a version
instead of the zero field. A server that recognises it answers like Flash Media
Server does (and nginx-rtmp): S1 carries a digest keyed with the first 36 bytes of the
"Genuine Adobe Flash Media Server 001" key, and S2 is random bytes followed by an HMAC
over them keyed with HMAC(full server key, the client's digest). Players verify both;
publishers (ffmpeg, OBS) do not, but answering correctly costs two HMACs.

C2 is checked against what we sent: an echo of S1's random bytes (plain, and what
ffmpeg sends when publishing) or a valid digest response. Because nginx-rtmp and SRS
never check C2 and some hardware encoders are sloppy about it, a mismatch is reported
(:attr:`ServerHandshake.c2_verified`) rather than fatal unless the connection's limits
ask for strictness.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Self

from ingest.rtmp.errors import ProtocolError

__all__ = [
    "HANDSHAKE_SIZE",
    "RTMP_VERSION",
    "HandshakePacket",
    "ServerHandshake",
    "check_c0",
    "digest_offset",
    "find_client_digest",
    "packet_digest",
]

HANDSHAKE_SIZE: Final = 1536  # C1/S1/C2/S2 (5.2.3, 5.2.4)
RTMP_VERSION: Final = 3  # C0/S0 (5.2.2)
RTMPE_VERSION: Final = 6  # encrypted RTMP (librtmp/ffmpeg "rtmpe://"), not supported
DIGEST_SIZE: Final = 32  # HMAC-SHA256
_RANDOM_SIZE: Final = HANDSHAKE_SIZE - 8

_KEY_TAIL: Final = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
SERVER_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
CLIENT_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
SERVER_KEY_PARTIAL: Final = SERVER_KEY[:36]
CLIENT_KEY_PARTIAL: Final = CLIENT_KEY[:30]
# The version S1 announces in the digest variant (what nginx-rtmp sends); a first byte
# of 3 or more tells a Flash-style client that S1 carries a digest.
SERVER_VERSION: Final = bytes((0x0D, 0x0E, 0x0A, 0x0D))
# Where the 4 offset bytes sit: "schema 0" (offset after time+version) and "schema 1".
DIGEST_BASES: Final = (8, 772)

_U32 = struct.Struct(">I")


def check_c0(version: int) -> None:
    """C0's version byte (5.2.2): 3 is RTMP; 6 is RTMPE; 0-2 and 4-31 deprecated/reserved."""
    if version == RTMP_VERSION:
        return
    if version == RTMPE_VERSION:
        raise ProtocolError("handshake: RTMPE (C0 version 6) is not supported; use rtmp://")
    if version in (ord("G"), ord("P"), ord("H")):  # GET, POST, HEAD
        raise ProtocolError(
            f"handshake: C0 version {version} looks like HTTP; this is an RTMP port"
        )
    raise ProtocolError(f"handshake: unsupported RTMP version {version} in C0 (expected 3)")


@dataclass(frozen=True, slots=True)
class HandshakePacket:
    """C1/S1 (5.2.3: time, zero, random) and C2/S2 (5.2.4: time, time2, random echo).

    ``version`` is the second 4-byte field: zero in plain C1/S1, the peer's version in
    the digest variant, and "time2" in C2/S2.
    """

    time: int
    version: bytes
    random: bytes

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) != HANDSHAKE_SIZE:
            raise ProtocolError(
                f"handshake: packet is {len(data)} bytes, expected {HANDSHAKE_SIZE} (5.2.3)"
            )
        (time,) = _U32.unpack_from(data, 0)
        return cls(time=int(time), version=bytes(data[4:8]), random=bytes(data[8:]))

    def __bytes__(self) -> bytes:
        if len(self.version) != 4 or len(self.random) != _RANDOM_SIZE:
            raise ValueError("handshake packet fields have the wrong sizes")
        return _U32.pack(self.time & 0xFFFFFFFF) + self.version + self.random


def digest_offset(packet: bytes, base: int) -> int:
    """Where the digest sits: the sum of 4 bytes at ``base``, modulo 728, past them."""
    return sum(packet[base : base + 4]) % 728 + base + 4


def packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of the packet without the 32 digest bytes at ``offset``."""
    message = packet[:offset] + packet[offset + DIGEST_SIZE :]
    return hmac.new(key, message, hashlib.sha256).digest()


def find_client_digest(c1: bytes) -> tuple[int, bytes] | None:
    """``(base, digest)`` when C1 carries a valid Flash Player digest, else None."""
    if c1[4:8] == b"\x00\x00\x00\x00":
        return None  # a plain C1 (5.2.3: the zero field)
    for base in DIGEST_BASES:
        offset = digest_offset(c1, base)
        digest = c1[offset : offset + DIGEST_SIZE]
        if hmac.compare_digest(packet_digest(c1, offset, CLIENT_KEY_PARTIAL), digest):
            return base, bytes(digest)
    return None


class ServerHandshake:
    """Builds S0+S1+S2 for a C0+C1 and judges the C2 that comes back."""

    def __init__(self, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random_bytes = random_bytes
        self.digest_variant = False
        self.c2_verified = False
        self._s1 = b""
        self._s1_digest = b""

    def respond(self, c0c1: bytes) -> bytes:
        """S0+S1+S2 for ``c0c1`` (1 + 1536 bytes)."""
        if len(c0c1) != 1 + HANDSHAKE_SIZE:
            raise ProtocolError(
                f"handshake: C0+C1 is {len(c0c1)} bytes, expected {1 + HANDSHAKE_SIZE}"
            )
        check_c0(c0c1[0])
        c1 = bytes(c0c1[1:])
        found = find_client_digest(c1)
        random = self._random_bytes(_RANDOM_SIZE)
        if found is None:
            # Plain (5.2.3/5.2.4): S1 is time 0, zero, random; S2 echoes C1.
            s1 = bytes(HandshakePacket(time=0, version=b"\x00" * 4, random=random))
            s2 = c1
        else:
            base, client_digest = found
            self.digest_variant = True
            s1_raw = bytearray(
                bytes(HandshakePacket(time=0, version=SERVER_VERSION, random=random))
            )
            offset = digest_offset(bytes(s1_raw), base)
            s1_digest = packet_digest(bytes(s1_raw), offset, SERVER_KEY_PARTIAL)
            s1_raw[offset : offset + DIGEST_SIZE] = s1_digest
            s1 = bytes(s1_raw)
            self._s1_digest = s1_digest
            s2_random = self._random_bytes(HANDSHAKE_SIZE - DIGEST_SIZE)
            s2_key = hmac.new(SERVER_KEY, client_digest, hashlib.sha256).digest()
            s2 = s2_random + hmac.new(s2_key, s2_random, hashlib.sha256).digest()
        self._s1 = s1
        return bytes((RTMP_VERSION,)) + s1 + s2

    def check_c2(self, c2: bytes) -> bool:
        """True when C2 echoes S1's random bytes or answers S1's digest."""
        if len(c2) != HANDSHAKE_SIZE:
            raise ProtocolError(f"handshake: C2 is {len(c2)} bytes, expected {HANDSHAKE_SIZE}")
        verified = hmac.compare_digest(c2[8:], self._s1[8:])
        if not verified and self.digest_variant:
            key = hmac.new(CLIENT_KEY, self._s1_digest, hashlib.sha256).digest()
            signature = hmac.new(key, c2[: HANDSHAKE_SIZE - DIGEST_SIZE], hashlib.sha256).digest()
            verified = hmac.compare_digest(signature, c2[HANDSHAKE_SIZE - DIGEST_SIZE :])
        self.c2_verified = verified
        return verified
