"""JWT signing keys: one HMAC secret (the default) or a rotating set of asymmetric keys.

HS256 (default): ``VIDEOPICK_JWT_SECRET``. It must be at least 32 bytes (RFC 7518
§3.2: an HS256 key is at least as long as the hash), and outside ``env=dev`` the
built-in development secret is refused. The ``kid`` is derived from the secret
(an HMAC of a fixed label, not the secret itself), so changing the secret makes every
earlier token "unknown key" at once.

EdDSA or RS256 (``VIDEOPICK_JWT_ALGORITHM``), with rotation by configuration:

- ``VIDEOPICK_JWT_KEYS_DIR``: one PEM file per key, named by its kid:
  ``<kid>.pem`` (a PKCS#8 private key) or ``<kid>.pub.pem`` (public only: it can
  verify but never sign, e.g. a key whose private half was destroyed).
- ``VIDEOPICK_JWT_ACTIVE_KID``: the key that signs new tokens (needs its private key).
- ``VIDEOPICK_JWT_RETIRED_KIDS``: ``kid@2026-05-20T12:00:00Z,…``: when each older key
  stopped signing. A retired key still verifies for ``VIDEOPICK_JWT_OVERLAP_S``
  (default 24 h = the token lifetime, so no token issued before the switch is cut
  short) after that moment; then it is refused even if its file is still there.
- Any other key in the folder is *published*: it verifies but does not sign yet.

A rotation without a 401 gap across N gateway processes, each step a rolling restart:
1. add ``new.pem`` to the folder (published: every process can verify it);
2. set ``ACTIVE_KID=new`` and ``RETIRED_KIDS=old@<now>``: new tokens use ``new``;
3. after the overlap, remove ``old.pem`` and its ``RETIRED_KIDS`` entry.

Algorithms never mix: a token is verified with the one algorithm of its key, so an
HS256 token "signed" with a public key (PyJWT CVE-2022-29217) is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from common.logs import get_logger
from common.settings import DEV_JWT_SECRET, Settings, SettingsError

log = get_logger(__name__)

HMAC_ALGORITHMS: Final = frozenset({"HS256"})
ASYMMETRIC_ALGORITHMS: Final = frozenset({"EdDSA", "RS256"})
MIN_SECRET_BYTES: Final = 32
MIN_RSA_BITS: Final = 2048
KID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Advice printed with a refusal, not a secret.
GENERATE_HINT: Final = "generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class KeyRejected(Exception):  # noqa: N818 - a verdict, handled by tokens.py
    """The token names a key we do not (or no longer) accept."""


@dataclass(frozen=True)
class JwtKey:
    kid: str
    algorithm: str
    verify_key: Any  # bytes (HMAC) or a cryptography public key
    sign_key: Any | None = None  # None: verify only
    retired_at: dt.datetime | None = None


@dataclass(frozen=True)
class KeySet:
    algorithm: str
    active: JwtKey
    keys: Mapping[str, JwtKey] = field(default_factory=dict)
    overlap_s: float = 24 * 3600.0

    def verification_key(self, kid: str, now: dt.datetime) -> JwtKey:
        key = self.keys.get(kid)
        if key is None:
            raise KeyRejected("the token's signing key is unknown")
        if key.retired_at is not None and now >= key.retired_at + dt.timedelta(
            seconds=self.overlap_s
        ):
            raise KeyRejected("the token's signing key was retired")
        return key


def hmac_kid(secret: bytes) -> str:
    return "hs256-" + hmac.new(secret, b"videopick jwt kid", hashlib.sha256).hexdigest()[:16]


def _hmac_key_set(settings: Settings) -> KeySet:
    secret = settings.jwt_secret.encode()
    if settings.env != "dev" and settings.jwt_secret == DEV_JWT_SECRET:
        raise SettingsError(
            f"VIDEOPICK_JWT_SECRET is the built-in development secret, refused with "
            f"VIDEOPICK_ENV={settings.env!r}; {GENERATE_HINT}"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise SettingsError(
            f"VIDEOPICK_JWT_SECRET is {len(secret)} bytes; HS256 needs at least "
            f"{MIN_SECRET_BYTES} (RFC 7518 §3.2); {GENERATE_HINT}"
        )
    key = JwtKey(kid=hmac_kid(secret), algorithm="HS256", verify_key=secret, sign_key=secret)
    return KeySet(algorithm="HS256", active=key, keys={key.kid: key}, overlap_s=0.0)


def _check_key_type(algorithm: str, key: Any, path: Path) -> None:
    if algorithm == "EdDSA":
        allowed: tuple[type, ...] = (
            ed25519.Ed25519PrivateKey,
            ed25519.Ed25519PublicKey,
            ed448.Ed448PrivateKey,
            ed448.Ed448PublicKey,
        )
        if not isinstance(key, allowed):
            raise SettingsError(f"{path}: EdDSA needs an Ed25519 or Ed448 key")
    elif algorithm == "RS256":
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            raise SettingsError(f"{path}: RS256 needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise SettingsError(f"{path}: RSA key of {key.key_size} bits, need {MIN_RSA_BITS}+")


def _load_pem(algorithm: str, path: Path) -> tuple[Any, Any | None]:
    """(public key, private key or None) from one PEM file."""
    data = path.read_bytes()
    private: Any | None = None
    try:
        if path.name.endswith(".pub.pem"):
            public: Any = load_pem_public_key(data)
        else:
            private = load_pem_private_key(data, password=None)
            public = private.public_key()
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{path}: not a usable unencrypted PEM key ({exc})") from exc
    _check_key_type(algorithm, public, path)
    return public, private


def _parse_retired(entries: tuple[str, ...]) -> dict[str, dt.datetime]:
    retired: dict[str, dt.datetime] = {}
    for entry in entries:
        kid, sep, when = entry.partition("@")
        try:
            if not sep:
                raise ValueError("missing '@'")
            moment = dt.datetime.fromisoformat(when.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise SettingsError(
                f"VIDEOPICK_JWT_RETIRED_KIDS entry {entry!r}: expected kid@ISO-8601 time ({exc})"
            ) from exc
        if moment.tzinfo is None:
            raise SettingsError(f"VIDEOPICK_JWT_RETIRED_KIDS entry {entry!r}: give a time zone")
        retired[kid.strip()] = moment.astimezone(dt.UTC)
    return retired


def _asymmetric_key_set(settings: Settings) -> KeySet:
    algorithm = settings.jwt_algorithm
    folder = settings.jwt_keys_dir
    if folder is None or not folder.is_dir():
        raise SettingsError(
            f"VIDEOPICK_JWT_ALGORITHM={algorithm} needs VIDEOPICK_JWT_KEYS_DIR, a folder of "
            f"<kid>.pem files (got {folder!r})"
        )
    retired = _parse_retired(settings.jwt_retired_kids)
    keys: dict[str, JwtKey] = {}
    for path in sorted(folder.glob("*.pem")):
        kid = path.name.removesuffix(".pem").removesuffix(".pub")
        if not KID_PATTERN.fullmatch(kid):
            raise SettingsError(f"{path}: kid {kid!r} must match {KID_PATTERN.pattern}")
        if kid in keys:
            raise SettingsError(f"{folder}: two files for kid {kid!r}")
        public, private = _load_pem(algorithm, path)
        keys[kid] = JwtKey(
            kid=kid,
            algorithm=algorithm,
            verify_key=public,
            sign_key=private,
            retired_at=retired.get(kid),
        )
    active_kid = settings.jwt_active_kid
    active = keys.get(active_kid)
    if active is None or active.sign_key is None:
        raise SettingsError(
            f"VIDEOPICK_JWT_ACTIVE_KID={active_kid!r} must name a private key "
            f"{active_kid or '<kid>'}.pem in {folder}"
        )
    if active.retired_at is not None:
        raise SettingsError(f"the active key {active_kid!r} is also listed as retired")
    for kid in sorted(set(retired) - set(keys)):
        log.warning("retired jwt key has no file; ignored", kid=kid)
    return KeySet(
        algorithm=algorithm, active=active, keys=keys, overlap_s=float(settings.jwt_overlap_s)
    )


def load_key_set(settings: Settings) -> KeySet:
    """The keys this process signs and verifies with; SettingsError with the fix if unusable."""
    algorithm = settings.jwt_algorithm
    if algorithm in HMAC_ALGORITHMS:
        return _hmac_key_set(settings)
    if algorithm in ASYMMETRIC_ALGORITHMS:
        return _asymmetric_key_set(settings)
    supported = ", ".join(sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS))
    raise SettingsError(f"VIDEOPICK_JWT_ALGORITHM={algorithm!r}: use one of {supported}")
