"""Access tokens (PyJWT): issue and verify, with every check pinned down.

Claims: ``user_id`` (and ``sub``, the same value, for JWT-generic consumers such as
the Centrifugo protocol), ``iat``, ``exp`` (``jwt_ttl_s``, 24 h), ``iss``, ``aud``;
header ``kid``. Verification, in order, each failure a 401 with its reason:

1. size: more than 8 KiB is refused before any parsing (a token is ~300 bytes; a huge
   one is an attack on the decoder or on our logs);
2. header: must parse and name a ``kid`` we accept (keys.py: unknown or retired → no);
3. signature with that key's single algorithm (``algorithms=[one]``): ``alg: none``,
   HS256-with-a-public-key and any other family switch fail here;
4. claims: exp, iat, iss, aud, user_id required (PyJWT only checks ``exp`` when present,
   NOTES.md), ``iss`` and ``aud`` compared exactly, ``nbf`` honoured when present.

A token that passed is remembered (the last :data:`VERIFIED_CACHE` of them), so the
next request with the same bytes skips parsing and the signature, which cost ~0.1 ms
of the event loop on each tus PATCH. Only the checks that can change are
repeated: its key still accepted (step 2) and ``exp``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

import jwt

from common.settings import Settings
from gateway.auth.keys import KeyRejected, KeySet

MAX_TOKEN_BYTES: Final = 8 * 1024
# Tolerated clock skew between gateway processes/hosts.
LEEWAY_S: Final = 30
REQUIRED_CLAIMS: Final = ("exp", "iat", "iss", "aud", "user_id")
VERIFIED_CACHE: Final = 4096


class InvalidToken(Exception):  # noqa: N818 - reads as the verdict at call sites
    """The bearer token is not acceptable; the message says why (safe to show)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    kid: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TokenService:
    def __init__(self, settings: Settings, keys: KeySet) -> None:
        self._keys = keys
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._ttl_s = settings.jwt_ttl_s
        self._verified: dict[str, AccessClaims] = {}  # insertion order: oldest first

    @property
    def keys(self) -> KeySet:
        return self._keys

    def issue(self, user_id: str, *, now: dt.datetime | None = None) -> IssuedToken:
        issued = int((now or _now()).timestamp())
        active = self._keys.active
        if active.sign_key is None:  # keys.py guarantees it; checked for the type checker
            raise RuntimeError(f"active key {active.kid!r} cannot sign")
        payload = {
            "user_id": user_id,
            "sub": user_id,
            "iat": issued,
            "exp": issued + self._ttl_s,
            "iss": self._issuer,
            "aud": self._audience,
        }
        token = jwt.encode(
            payload, active.sign_key, algorithm=active.algorithm, headers={"kid": active.kid}
        )
        return IssuedToken(token=token, expires_in=self._ttl_s)

    def verify(self, token: str) -> AccessClaims:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token larger than {MAX_TOKEN_BYTES} bytes")
        moment = _now()
        known = self._verified.get(token)
        if known is not None:
            return self._still_valid(known, moment)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id (kid)")
        try:
            key = self._keys.verification_key(kid, moment)
        except KeyRejected as exc:
            raise InvalidToken(str(exc)) from exc
        claims = self._decode(token, key.verify_key, key.algorithm)
        user_id = claims.get("user_id")
        # Belt and braces over PyJWT: exact types and values, whatever its version does.
        if not isinstance(user_id, str) or not user_id:
            raise InvalidToken("token has no valid user_id")
        if claims.get("iss") != self._issuer or claims.get("aud") != self._audience:
            raise InvalidToken("token issuer or audience mismatch")
        verified = AccessClaims(
            user_id=user_id, kid=kid, issued_at=int(claims["iat"]), expires_at=int(claims["exp"])
        )
        if len(self._verified) >= VERIFIED_CACHE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = verified
        return verified

    def _still_valid(self, claims: AccessClaims, moment: dt.datetime) -> AccessClaims:
        """A remembered token: what time can change (as the full path words it)."""
        try:
            self._keys.verification_key(claims.kid, moment)
        except KeyRejected as exc:
            raise InvalidToken(str(exc)) from exc
        if moment.timestamp() >= claims.expires_at + LEEWAY_S:
            raise InvalidToken("token expired")
        return claims

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("token audience mismatch") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("token issuer mismatch") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not valid yet") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise InvalidToken("token algorithm not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("token signature invalid") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken("invalid token") from exc
        return claims
