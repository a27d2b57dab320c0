"""Request and response bodies of the auth API (msgspec: validated, and in the OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Username = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=32,
        pattern=r"^[A-Za-z0-9_]+$",
        description="3–32 characters: letters, digits, underscore",
        examples=["alice_01"],
    ),
]
# Deliberately simple: one @, no spaces, a dot in the domain. Deliverability is the
# mail server's business; this only keeps obvious garbage out (RFC 5321 caps 254).
Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s.]+$",
        examples=["alice@example.com"],
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(min_length=8, max_length=256, description="8–256 characters"),
]
Login = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=254, description="username or email"),
]


class RegisterRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    email: Email
    password: Password


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    login: Login
    # No length rule beyond the cap: an old account's password is checked, not judged.
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class UserOut(msgspec.Struct):
    id: str
    username: str
    email: str
    stream_id: str


class TokenOut(msgspec.Struct):
    access_token: str
    expires_in: int
    user: UserOut
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 token type name
