"""Stream keys: made, hashed, and kept so that only their owner can see them again.

A stream key is ``secrets.token_urlsafe(32)`` (32 random bytes, 43 URL-safe chars).
What leaves the gateway is only its SHA-256 (``channel.key_rotated``): ingest hashes
the key a publisher presents and compares digests in constant time. A fast hash is
right here, unlike passwords: the key is 256 random bits, not something guessable.

Display design. ``GET /api/v2/streams/key`` must show the key, and a hash cannot be
reversed, so the gateway also keeps the key *encrypted at rest* (``key_box``):
AES-256-GCM under a server-side key, with the ``stream_id`` as associated data (a box
copied onto another channel does not open). The box key comes from
``VIDEOPICK_STREAM_KEY_SECRET``, or, when that is empty, is derived (HKDF-SHA256) from
the JWT secret. Only the gateway holds it; a database dump alone reveals no key.

If a box no longer opens (that secret was changed, or a restored backup), the key is
unrecoverable by design: ``GET`` then rotates the key — a new key, a new
``channel.key_rotated`` — and says so in the response (``rotated: true``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.settings import DEV_JWT_SECRET, Settings, SettingsError

KEY_BYTES: Final = 32
STREAM_ID_BYTES: Final = 12  # 16 URL-safe chars: unguessable, short enough for URLs
BOX_VERSION: Final = b"\x01"
NONCE_BYTES: Final = 12  # GCM's standard nonce; random per box
HASH_ALGORITHM: Final = "sha256"
MIN_SECRET_BYTES: Final = 32


class KeyBoxError(Exception):
    """The stored box cannot be opened with this server's secret."""


def new_stream_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def new_stream_id() -> str:
    return secrets.token_urlsafe(STREAM_ID_BYTES)


def hash_stream_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def stream_key_matches(key: str, key_hash: str) -> bool:
    """Constant-time over the whole digest (RELIABILITY.md: keys compared in constant time)."""
    return hmac.compare_digest(hash_stream_key(key).encode(), key_hash.encode())


def _box_secret(settings: Settings) -> bytes:
    if settings.stream_key_secret:
        secret = settings.stream_key_secret.encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"VIDEOPICK_STREAM_KEY_SECRET is {len(secret)} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes"
            )
        return secret
    # With asymmetric JWT keys the HMAC secret is unused and may be the default.
    if (
        settings.env != "dev"
        and settings.jwt_algorithm != "HS256"
        and settings.jwt_secret == DEV_JWT_SECRET
    ):
        raise SettingsError(
            "set VIDEOPICK_STREAM_KEY_SECRET (at least 32 random bytes): with "
            f"VIDEOPICK_JWT_ALGORITHM={settings.jwt_algorithm} there is no JWT secret "
            "to derive the stream-key encryption key from"
        )
    return settings.jwt_secret.encode()


class KeyBox:
    """Encrypts stream keys for storage; one per process, built from the settings."""

    def __init__(self, settings: Settings) -> None:
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"videopick",
            info=b"videopick stream-key box v1",
        )
        self._aead = AESGCM(hkdf.derive(_box_secret(settings)))

    def seal(self, stream_id: str, key: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, key.encode(), stream_id.encode())
        return base64.urlsafe_b64encode(BOX_VERSION + nonce + sealed).decode()

    def open(self, stream_id: str, box: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(box.encode())
        except ValueError as exc:
            raise KeyBoxError("stored key box is not base64") from exc
        if raw[:1] != BOX_VERSION or len(raw) < 1 + NONCE_BYTES + 16:
            raise KeyBoxError("unknown key box format")
        nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, stream_id.encode()).decode()
        except InvalidTag as exc:
            raise KeyBoxError("stored key box does not open with this server's secret") from exc
