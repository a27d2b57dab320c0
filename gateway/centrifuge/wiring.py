"""How the chat plugs into the gateway app (``gateway/app.py``).

Two lines there::

    ROUTE_HANDLERS += [centrifugo_websocket, wallet_router]
    LIFESPAN_HOOKS += [chat_lifespan]

``chat_lifespan`` runs after the core services are up: it starts a
:class:`~gateway.centrifuge.service.ChatGateway` with the gateway's own JWT check
(``app.state.tokens``) and user names from the gateway's accounts, and puts it in
``app.state.chat`` for the WebSocket endpoint and the wallet API.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.settings import Settings
from events.envelope import new_event_id
from gateway.auth.models import User
from gateway.auth.tokens import InvalidToken, TokenService
from gateway.centrifuge.endpoint import STATE_KEY
from gateway.centrifuge.origin import chat_origins
from gateway.centrifuge.service import ChatGateway, NameResolver, TokenRefused, TokenVerifier


def token_verifier(tokens: TokenService) -> TokenVerifier:
    def verify(token: str) -> str:
        try:
            return tokens.verify(token).user_id
        except InvalidToken as exc:
            expired = isinstance(exc.__cause__, jwt.ExpiredSignatureError)
            raise TokenRefused(str(exc), expired=expired) from exc

    return verify


def name_resolver(sessions: async_sessionmaker[AsyncSession]) -> NameResolver:
    async def resolve(user_id: str) -> str:
        async with sessions() as session:
            name = await session.scalar(select(User.username).where(User.id == user_id))
        return name or ""

    return resolve


@asynccontextmanager
async def chat_lifespan(app: Litestar) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    services = app.state.services
    chat = ChatGateway(
        settings,
        verify_token=token_verifier(app.state.tokens),
        resolve_name=name_resolver(services.sessions),
        allowed_origins=chat_origins(settings),
        gateway_id=_gateway_id(),
    )
    await chat.start()
    setattr(app.state, STATE_KEY, chat)
    try:
        yield
    finally:
        setattr(app.state, STATE_KEY, None)
        await chat.stop()


def _gateway_id() -> str:
    """Unique per process (it routes rejections back to this process)."""
    instance = os.environ.get("VIDEOPICK_INSTANCE", "gateway")
    return f"{instance}-{os.getpid()}-{new_event_id()[-12:]}"
