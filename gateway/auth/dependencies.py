"""``current_user``: the authenticated caller, from ``Authorization: Bearer <jwt>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from litestar import Request
from litestar.di import NamedDependency
from litestar.openapi.spec import SecurityRequirement, SecurityScheme

from gateway.auth.tokens import MAX_TOKEN_BYTES, InvalidToken
from gateway.errors import UnauthorizedError
from gateway.services import ServicesDep

BEARER_SCHEME: Final = "BearerToken"
SECURITY_SCHEMES: Final = {
    BEARER_SCHEME: SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="The access_token from /api/v2/auth/login or /register",
    )
}
# Put on every route that needs a caller: OpenAPI shows the lock, schemathesis knows.
REQUIRES_AUTH: Final[list[SecurityRequirement]] = [{BEARER_SCHEME: []}]


@dataclass(frozen=True)
class CurrentUser:
    user_id: str


# Handler parameter type: `current_user: CurrentUserDep`.
CurrentUserDep = NamedDependency[CurrentUser]


def bearer_token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise UnauthorizedError("missing Authorization: Bearer <token> header")
    # Checked before splitting: an 8 KiB+ header is refused without more work.
    if len(header) > MAX_TOKEN_BYTES + 16:
        raise UnauthorizedError(f"token larger than {MAX_TOKEN_BYTES} bytes")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("expected Authorization: Bearer <token>")
    return token.strip()


async def provide_current_user(
    request: Request[Any, Any, Any], services: ServicesDep
) -> CurrentUser:
    token = bearer_token(request)
    try:
        claims = services.tokens.verify(token)
    except InvalidToken as exc:
        raise UnauthorizedError(str(exc)) from exc
    return CurrentUser(user_id=claims.user_id)
