"""``/api/v2/auth``: register, login, me."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Request, Router, get, post
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.logs import get_logger
from events.catalog import ChannelKeyRotated, UserRegistered
from events.envelope import new_event_id
from gateway.auth import passwords
from gateway.auth.dependencies import REQUIRES_AUTH, CurrentUserDep
from gateway.auth.limiter import bucket
from gateway.auth.models import User
from gateway.auth.schemas import LoginRequest, RegisterRequest, TokenOut, UserOut
from gateway.channels.keys import HASH_ALGORITHM, hash_stream_key, new_stream_id, new_stream_key
from gateway.channels.models import Channel
from gateway.errors import ConflictError, TooManyRequestsError, UnauthorizedError
from gateway.services import Services, ServicesDep

log = get_logger(__name__)

BAD_CREDENTIALS = "wrong login or password"


def client_address(request: Request[Any, Any, Any]) -> str:
    # uvicorn has already replaced this with X-Forwarded-For's client when the peer is
    # one of VIDEOPICK_HTTP_TRUSTED_PROXIES (gateway/__main__.py).
    return request.client.host if request.client else "unknown"


def correlation_id(request: Request[Any, Any, Any]) -> str:
    request_id = request.scope.get("state", {}).get("request_id")
    return str(request_id) if request_id else ""


async def _limit(services: Services, *buckets: str) -> None:
    verdict = await services.login_limiter.hit(*buckets)
    if not verdict.allowed:
        raise TooManyRequestsError(
            f"too many attempts; try again in {verdict.retry_after_s} s",
            retry_after_s=verdict.retry_after_s,
        )


async def _user_out(session: AsyncSession, user: User) -> UserOut:
    stream_id = await session.scalar(select(Channel.stream_id).where(Channel.user_id == user.id))
    return UserOut(id=user.id, username=user.username, email=user.email, stream_id=stream_id or "")


def _token_out(services: Services, user: UserOut) -> TokenOut:
    issued = services.tokens.issue(user.id)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in, user=user)


@post("/register", status_code=HTTP_201_CREATED, summary="Create an account and its channel")
async def register(
    data: JSONBody[RegisterRequest], request: Request[Any, Any, Any], services: ServicesDep
) -> TokenOut:
    """Creates the account, its channel and first stream key; answers like login.

    Publishes `user.registered` and `channel.key_rotated` (the key's hash only).
    """
    await _limit(services, bucket("register-addr", client_address(request)))
    username_key, email_key = data.username.lower(), data.email.strip().lower()
    async with services.sessions() as session:
        clash = (
            await session.execute(
                select(User.username_key, User.email_key).where(
                    or_(User.username_key == username_key, User.email_key == email_key)
                )
            )
        ).first()
    if clash is not None:
        field = "username" if clash.username_key == username_key else "email"
        raise ConflictError(f"this {field} is already registered")

    password_hash = await passwords.hash_password(data.password)
    now = dt.datetime.now(dt.UTC)
    user = User(
        id=new_event_id(),  # UUIDv7: time-ordered, like every other id here
        username=data.username,
        username_key=username_key,
        email=data.email.strip(),
        email_key=email_key,
        password_hash=password_hash,
        created_at=now,
    )
    key, stream_id = new_stream_key(), new_stream_id()
    channel = Channel(
        stream_id=stream_id,
        user_id=user.id,
        key_hash=hash_stream_key(key),
        key_box=services.key_box.seal(stream_id, key),
        key_rotated_at=now,
        title="",
        description="",
        updated_at=now,
    )
    correlation = correlation_id(request)
    try:
        async with services.sessions() as session, session.begin():
            session.add(user)
            await session.flush()
            session.add(channel)
            await session.flush()
            # Published inside the transaction: if NATS refuses, nothing is committed
            # and the client gets a 503 to retry. (A commit failing after a publish
            # would leave an event for an account that does not exist; consumers of
            # user.* tolerate unknown users.)
            await services.publisher.publish(
                UserRegistered(
                    user_id=user.id, username=user.username, stream_id=channel.stream_id
                ),
                correlation_id=correlation,
            )
            await services.publisher.publish(
                ChannelKeyRotated(
                    stream_id=channel.stream_id,
                    user_id=user.id,
                    key_hash=channel.key_hash,
                    hash_algorithm=HASH_ALGORITHM,
                ),
                correlation_id=correlation,
            )
    except IntegrityError as exc:  # a concurrent registration won the race
        raise ConflictError("this username or email is already registered") from exc
    log.info("user registered", user_id=user.id, stream_id=channel.stream_id)
    out = UserOut(id=user.id, username=user.username, email=user.email, stream_id=channel.stream_id)
    return _token_out(services, out)


@post("/login", status_code=HTTP_200_OK, summary="Exchange a login and password for a token")
async def login(
    data: JSONBody[LoginRequest], request: Request[Any, Any, Any], services: ServicesDep
) -> TokenOut:
    """`login` is the username or the email. Limited per account and per address (429)."""
    login_key = data.login.strip().lower()
    account_bucket = bucket("login-account", login_key)
    await _limit(services, account_bucket, bucket("login-addr", client_address(request)))

    column = User.email_key if "@" in login_key else User.username_key
    async with services.sessions() as session:
        user = await session.scalar(select(User).where(column == login_key))
    if user is None:
        await passwords.burn_verify(data.password)  # same time as a wrong password
        raise UnauthorizedError(BAD_CREDENTIALS)
    if not await passwords.verify_password(user.password_hash, data.password):
        raise UnauthorizedError(BAD_CREDENTIALS)

    await services.login_limiter.clear(account_bucket)
    if passwords.needs_rehash(user.password_hash):
        new_hash = await passwords.hash_password(data.password)
        async with services.sessions.begin() as session:
            await session.execute(
                update(User).where(User.id == user.id).values(password_hash=new_hash)
            )
    async with services.sessions() as session:
        out = await _user_out(session, user)
    return _token_out(services, out)


@get("/me", security=REQUIRES_AUTH, summary="The authenticated account")
async def me(current_user: CurrentUserDep, services: ServicesDep) -> UserOut:
    async with services.sessions() as session:
        user = await session.get(User, current_user.user_id)
        if user is None:
            raise UnauthorizedError("the token's account no longer exists")
        return await _user_out(session, user)


auth_router = Router(
    "/api/v2/auth",
    route_handlers=[register, login, me],
    tags=["auth"],
)
