"""JWT: tampered tokens are 401s; asymmetric keys rotate with an overlap window; weak
secrets stop the gateway from starting (RELIABILITY.md, "Auth": PyJWT CVE-2022-29217).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from nats.js import JetStreamContext

from common.settings import DEV_JWT_SECRET, Settings, SettingsError, load_settings
from gateway.app import create_app
from gateway.auth.keys import hmac_kid, load_key_set
from gateway.auth.tokens import InvalidToken, TokenService
from tests.fixtures.gateway import REPO_ROOT, GatewayUser, register_user, running_gateway

pytestmark = pytest.mark.integration

UserFactory = Callable[[str], Awaitable[GatewayUser]]
ISS = AUD = "videopick"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, for the shapes PyJWT refuses to produce."""
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def claims_for(uid: str, **overrides: Any) -> dict[str, Any]:
    """Valid claims for ``uid``; an override of None drops that claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "user_id": uid,
        "iat": now,
        "exp": now + 3600,
        "iss": ISS,
        "aud": AUD,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(claims: dict[str, Any], secret: str = DEV_JWT_SECRET, kid: str | None = None) -> str:
    kid = kid or hmac_kid(secret.encode())
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v2/auth/me", headers={"Authorization": f"Bearer {token}"})


# --- HS256 (the default) over HTTP ------------------------------------------------------


async def test_tampered_tokens_are_401(
    gateway: httpx.AsyncClient, gateway_user: UserFactory
) -> None:
    alice = await gateway_user("alice")
    kid = hmac_kid(DEV_JWT_SECRET.encode())
    good = hs256(claims_for(alice.id))
    assert (await _me(gateway, good)).status_code == 200  # the forging helper is right

    header, body, signature = alice.token.split(".")
    now = int(time.time())
    other_user = claims_for("someone-else")
    cases: dict[str, str] = {
        "alg none": forge({"alg": "none", "typ": "JWT", "kid": kid}, claims_for(alice.id)),
        "alg None": forge({"alg": "None", "kid": kid}, claims_for(alice.id)),
        "missing exp": hs256(claims_for(alice.id, exp=None)),
        "missing iat": hs256(claims_for(alice.id, iat=None)),
        "missing user_id": hs256(claims_for(alice.id, user_id=None)),
        "missing aud": hs256(claims_for(alice.id, aud=None)),
        "wrong aud": hs256(claims_for(alice.id, aud="other-service")),
        "aud list": hs256(claims_for(alice.id, aud=[AUD, "x"])),
        "wrong iss": hs256(claims_for(alice.id, iss="evil")),
        "iss prefix trick": hs256(claims_for(alice.id, iss="videopick.evil.example")),
        "iss substring": hs256(claims_for(alice.id, iss="video")),
        "expired": hs256(claims_for(alice.id, iat=now - 7200, exp=now - 3600)),
        "not yet valid": hs256(claims_for(alice.id, nbf=now + 3600)),
        "user_id not a string": hs256(claims_for(alice.id, user_id=12)),
        "unknown kid": hs256(claims_for(alice.id), kid="no-such-key"),
        "no kid": jwt.encode(claims_for(alice.id), DEV_JWT_SECRET, algorithm="HS256"),
        "other secret": hs256(claims_for(alice.id), secret="x" * 48, kid=kid),
        "payload swapped": f"{header}.{_b64(json.dumps(other_user).encode())}.{signature}",
        "signature stripped": f"{header}.{body}.",
        "garbage": "not.a.jwt",
        "garbage one part": "garbage",
        "bad base64": "@@@.@@@.@@@",
        "oversized": hs256(claims_for(alice.id, pad="x" * 9000)),
    }
    for name, token in cases.items():
        response = await _me(gateway, token)
        assert response.status_code == 401, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert "Traceback" not in response.text


async def test_oversized_authorization_header_is_refused_before_decoding(
    gateway: httpx.AsyncClient,
) -> None:
    response = await _me(gateway, "a" * (64 * 1024))
    assert response.status_code == 401
    assert "larger than" in response.json()["detail"]


async def test_token_claims_and_header(
    gateway: httpx.AsyncClient, gateway_user: UserFactory
) -> None:
    bob = await gateway_user("bob")
    header = jwt.get_unverified_header(bob.token)
    assert header["alg"] == "HS256"
    assert header["kid"] == hmac_kid(DEV_JWT_SECRET.encode())
    claims = jwt.decode(bob.token, DEV_JWT_SECRET, algorithms=["HS256"], audience=AUD)
    assert claims["user_id"] == bob.id
    assert claims["iss"] == ISS
    assert claims["exp"] - claims["iat"] == 24 * 3600


# --- start-up refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIDEOPICK_ENV": "production"}, "built-in development secret"),
        ({"VIDEOPICK_ENV": "production", "VIDEOPICK_JWT_SECRET": "short-secret"}, "at least 32"),
        ({"VIDEOPICK_JWT_SECRET": "x" * 31}, "at least 32"),
        ({"VIDEOPICK_JWT_ALGORITHM": "none"}, "use one of"),
        ({"VIDEOPICK_JWT_ALGORITHM": "EdDSA"}, "VIDEOPICK_JWT_KEYS_DIR"),
        ({"VIDEOPICK_CORS_ORIGINS": "*"}, "CORS"),
        ({"VIDEOPICK_CORS_ORIGINS": "https://*.example.com"}, "CORS"),
        ({"VIDEOPICK_STREAM_KEY_SECRET": "tiny"}, "STREAM_KEY_SECRET"),
    ],
)
def test_unsafe_configuration_refuses_to_build_the_app(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        create_app(load_settings(env))


def test_a_strong_secret_is_accepted_outside_dev() -> None:
    settings = load_settings({"VIDEOPICK_ENV": "production", "VIDEOPICK_JWT_SECRET": "s" * 32})
    create_app(settings)


def test_python_m_gateway_exits_with_a_clear_message_on_a_weak_secret(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "VIDEOPICK_ENV": "production",
        "VIDEOPICK_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration refused" in result.stderr
    assert "VIDEOPICK_JWT_SECRET" in result.stderr


# --- asymmetric keys and rotation ------------------------------------------------------


def _write_ed25519(folder: Path, kid: str) -> ed25519.Ed25519PrivateKey:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / f"{kid}.pem").write_bytes(pem)
    return key


def _public_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _eddsa_settings(
    folder: Path, active: str, retired: str = "", overlap_s: int = 3600
) -> Settings:
    env = {
        "VIDEOPICK_JWT_ALGORITHM": "EdDSA",
        "VIDEOPICK_JWT_KEYS_DIR": str(folder),
        "VIDEOPICK_JWT_ACTIVE_KID": active,
        "VIDEOPICK_JWT_OVERLAP_S": str(overlap_s),
    }
    if retired:
        env["VIDEOPICK_JWT_RETIRED_KIDS"] = retired
    return load_settings(env)


def _ago(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).isoformat()


def test_rotation_overlap_window(tmp_path: Path) -> None:
    _write_ed25519(tmp_path, "k2025")
    _write_ed25519(tmp_path, "k2026")
    before = TokenService(*_pair(_eddsa_settings(tmp_path, active="k2025")))
    old_token = before.issue("user-1").token
    assert jwt.get_unverified_header(old_token) == {"alg": "EdDSA", "kid": "k2025", "typ": "JWT"}

    # Switched an hour ago, one-hour-and-a-half overlap: the old key still verifies.
    inside = TokenService(
        *_pair(_eddsa_settings(tmp_path, "k2026", retired=f"k2025@{_ago(1)}", overlap_s=5400))
    )
    assert inside.verify(old_token).user_id == "user-1"
    new_token = inside.issue("user-1").token
    assert jwt.get_unverified_header(new_token)["kid"] == "k2026"
    assert inside.verify(new_token).kid == "k2026"

    # Past the overlap: refused although the file is still there.
    after = TokenService(
        *_pair(_eddsa_settings(tmp_path, "k2026", retired=f"k2025@{_ago(2)}", overlap_s=5400))
    )
    with pytest.raises(InvalidToken, match="retired"):
        after.verify(old_token)
    assert after.verify(new_token).user_id == "user-1"

    # Removed from the folder: unknown.
    (tmp_path / "k2025.pem").unlink()
    gone = TokenService(*_pair(_eddsa_settings(tmp_path, "k2026")))
    with pytest.raises(InvalidToken, match="unknown"):
        gone.verify(old_token)


def test_a_remembered_token_still_expires_and_its_key_still_retires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified tokens are remembered; time still counts against them."""
    _write_ed25519(tmp_path, "k2025")
    _write_ed25519(tmp_path, "k2026")
    old_token = TokenService(*_pair(_eddsa_settings(tmp_path, active="k2025"))).issue("u1").token
    # Retired half an hour ago with a one-hour overlap: accepted for 30 more minutes.
    service = TokenService(
        *_pair(_eddsa_settings(tmp_path, "k2026", retired=f"k2025@{_ago(0.5)}", overlap_s=3600))
    )
    new_token = service.issue("u1").token
    assert service.verify(old_token).user_id == "u1"
    assert service.verify(new_token).user_id == "u1"
    # The remembered answer skips the signature, not the checks that time changes.
    monkeypatch.setattr(jwt, "decode", None)  # any full verification would now fail
    assert service.verify(old_token).user_id == "u1"

    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=31)
    monkeypatch.setattr("gateway.auth.tokens._now", lambda: later)
    with pytest.raises(InvalidToken, match="retired"):
        service.verify(old_token)
    assert service.verify(new_token).user_id == "u1"

    expired = dt.datetime.fromtimestamp(service.verify(new_token).expires_at + 31, dt.UTC)
    monkeypatch.setattr("gateway.auth.tokens._now", lambda: expired)
    with pytest.raises(InvalidToken, match="expired"):
        service.verify(new_token)


def test_a_published_key_verifies_before_it_signs(tmp_path: Path) -> None:
    """Step 1 of a rollout: the new key is in every process before any signs with it."""
    _write_ed25519(tmp_path, "current")
    _write_ed25519(tmp_path, "next")
    ahead = TokenService(*_pair(_eddsa_settings(tmp_path, active="next")))
    behind = TokenService(*_pair(_eddsa_settings(tmp_path, active="current")))
    assert behind.verify(ahead.issue("u").token).kid == "next"


def test_public_only_keys_verify_but_cannot_be_active(tmp_path: Path) -> None:
    old = _write_ed25519(tmp_path, "old")
    (tmp_path / "old.pem").unlink()
    (tmp_path / "old.pub.pem").write_bytes(_public_pem(old))
    _write_ed25519(tmp_path, "new")
    service = TokenService(*_pair(_eddsa_settings(tmp_path, active="new")))
    token = jwt.encode(claims_for("u"), old, algorithm="EdDSA", headers={"kid": "old"})
    assert service.verify(token).kid == "old"
    with pytest.raises(SettingsError, match="ACTIVE_KID"):
        load_key_set(_eddsa_settings(tmp_path, active="old"))


def test_eddsa_refuses_hs256_signed_with_the_public_key(tmp_path: Path) -> None:
    """CVE-2022-29217: an HMAC "signed" with the public PEM must not verify."""
    key = _write_ed25519(tmp_path, "k1")
    service = TokenService(*_pair(_eddsa_settings(tmp_path, active="k1")))
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    claims = claims_for("u")
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(_public_pem(key), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="algorithm"):
        service.verify(f"{signing_input}.{_b64(mac)}")
    with pytest.raises(InvalidToken):
        service.verify(forge({"alg": "none", "kid": "k1"}, claims))


def test_key_files_are_checked(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "weak.pem").write_bytes(
        small.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    rs = load_settings(
        {
            "VIDEOPICK_JWT_ALGORITHM": "RS256",
            "VIDEOPICK_JWT_KEYS_DIR": str(tmp_path),
            "VIDEOPICK_JWT_ACTIVE_KID": "weak",
        }
    )
    with pytest.raises(SettingsError, match="2048"):
        load_key_set(rs)
    with pytest.raises(SettingsError, match="Ed25519"):
        load_key_set(_eddsa_settings(tmp_path, active="weak"))
    (tmp_path / "weak.pem").write_text("not a key")
    with pytest.raises(SettingsError, match="PEM"):
        load_key_set(_eddsa_settings(tmp_path, active="weak"))
    (tmp_path / "weak.pem").unlink()
    _write_ed25519(tmp_path, "ok")
    with pytest.raises(SettingsError, match="kid@ISO"):
        load_key_set(_eddsa_settings(tmp_path, active="ok", retired="old-no-time"))


def _pair(settings: Settings) -> tuple[Settings, Any]:
    return settings, load_key_set(settings)


async def test_eddsa_gateway_end_to_end(
    gateway_settings: Settings, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    keys = tmp_path / "jwt-keys"
    keys.mkdir()
    old = _write_ed25519(keys, "old")
    _write_ed25519(keys, "new")
    eddsa = msgspec.structs.replace(
        gateway_settings,
        jwt_algorithm="EdDSA",
        jwt_keys_dir=keys,
        jwt_active_kid="new",
        jwt_retired_kids=(f"old@{_ago(0.5)}",),
        jwt_overlap_s=3600,
    )
    async with running_gateway(eddsa) as (_app, client):
        user = await register_user(client, "eddsa_user")
        assert jwt.get_unverified_header(user.token)["kid"] == "new"
        assert (await _me(client, user.token)).status_code == 200
        old_token = jwt.encode(claims_for(user.id), old, algorithm="EdDSA", headers={"kid": "old"})
        assert (await _me(client, old_token)).status_code == 200  # inside the overlap
        header = {"alg": "HS256", "typ": "JWT", "kid": "new"}
        signing_input = (
            f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims_for(user.id)).encode())}"
        )
        public = (keys / "new.pem").read_bytes()
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        assert (await _me(client, f"{signing_input}.{_b64(mac)}")).status_code == 401

    expired = msgspec.structs.replace(eddsa, jwt_retired_kids=(f"old@{_ago(2)}",))
    async with running_gateway(expired) as (_app, client):
        response = await _me(client, old_token)
        assert response.status_code == 401
        assert "retired" in response.json()["detail"]
