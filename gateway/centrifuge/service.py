"""The gateway's chat service: one per process, shared by every WebSocket connection.

It owns a raw nats-py connection (the fan-out hot path and ``chat.message``
publishing; NOTES.md), the :class:`~gateway.centrifuge.hub.ChatHub`, and the two seams
to the rest of the gateway: how a connect token becomes a user, and a user's display
name. ``gateway_id`` names this process in ``chat.message`` so a rejection finds its
way back to the sender's connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from common.logs import get_logger
from common.settings import Settings
from events.catalog import ChatMessage, ChatUser, encode_event
from events.envelope import Event, new_event_id
from events.publisher import MSG_ID_HEADER
from events.streams import stream_for_subject
from gateway.centrifuge import codes
from gateway.centrifuge.codes import Disconnect, ReplyError
from gateway.centrifuge.hub import ChatHub
from gateway.centrifuge.session import Identity, SessionConfig

log = get_logger(__name__)

COMPONENT: Final = "gateway"
# How long a publish waits for the chat component's decision. The SDKs give up on a
# reply after 5 s by default (their `timeout` option).
DECISION_TIMEOUT_S: Final = 10.0
PUBLISH_TIMEOUT_S: Final = 2.0
PUBLISH_ATTEMPTS: Final = 3


class TokenRefused(Exception):  # noqa: N818
    """The connect token is not acceptable. ``expired`` → the SDK asks for a new one."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


# token → user id, or TokenRefused. The gateway's JWT check (gateway/auth/tokens.py).
TokenVerifier = Callable[[str], str]
# user id → display name ("" when unknown: the chat component knows it too).
NameResolver = Callable[[str], Awaitable[str]]


async def _no_name(_user_id: str) -> str:
    return ""


@dataclass(frozen=True)
class ChatLimits:
    max_chars: int
    history_size: int
    max_frame_bytes: int
    queue_max_bytes: int
    ping_interval_s: float
    pong_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatLimits:
        return cls(
            max_chars=settings.chat_max_chars,
            history_size=settings.chat_history_size,
            max_frame_bytes=settings.chat_ws_max_frame_bytes,
            queue_max_bytes=settings.chat_ws_queue_max_bytes,
            ping_interval_s=settings.chat_ping_interval_s,
            pong_timeout_s=settings.chat_pong_timeout_s,
        )

    def session_config(self) -> SessionConfig:
        return SessionConfig(
            max_chars=self.max_chars,
            ping_interval_s=self.ping_interval_s,
            pong_timeout_s=self.pong_timeout_s,
        )


class ChatGateway:
    def __init__(
        self,
        settings: Settings,
        *,
        verify_token: TokenVerifier,
        resolve_name: NameResolver = _no_name,
        allowed_origins: frozenset[str] = frozenset(),
        gateway_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.limits = ChatLimits.from_settings(settings)
        self.verify_token = verify_token
        self.resolve_name = resolve_name
        self.allowed_origins = allowed_origins
        self.gateway_id = gateway_id or f"gw-{new_event_id()}"
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._hub: ChatHub | None = None
        self.connections = 0

    @property
    def hub(self) -> ChatHub:
        if self._hub is None:
            raise RuntimeError("ChatGateway is not started")
        return self._hub

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("ChatGateway is not started")
        return self._nc

    async def start(self) -> None:
        self._nc = await nats.connect(
            self.settings.nats_servers,
            name=f"videopick-{COMPONENT}-chat",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            reconnected_cb=self._reconnected,
        )
        self._js = self._nc.jetstream()
        self._hub = ChatHub(
            self._nc, gateway_id=self.gateway_id, history_size=self.limits.history_size
        )
        await self._hub.start()
        log.info("chat gateway ready", gateway_id=self.gateway_id)

    async def stop(self) -> None:
        if self._hub is not None:
            await self._hub.stop()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        self._hub = None
        self._nc = None

    async def _reconnected(self) -> None:
        # Core subscriptions miss what was published while disconnected: catch up
        # from the history (the sequencer drops what it already has).
        if self._hub is not None:
            asyncio.get_running_loop().create_task(self._hub.resync())

    # --- connect --------------------------------------------------------------------

    async def authenticate(self, token: str) -> Identity | ReplyError | Disconnect:
        if not token:
            return Identity()  # anonymous: read only
        try:
            user_id = self.verify_token(token)
        except TokenRefused as exc:
            # An expired token gets error 109 so the SDK fetches a fresh one
            # (getToken) and reconnects; anything else is final (3500).
            return codes.TOKEN_EXPIRED if exc.expired else codes.INVALID_TOKEN
        try:
            name = await self.resolve_name(user_id)
        except Exception:  # a name is a nicety; the chat component knows it too
            log.warning("chat name lookup failed", user_id=user_id, exc_info=True)
            name = ""
        return Identity(user_id=user_id, name=name)

    # --- publish ------------------------------------------------------------------------

    async def publish(
        self, identity: Identity, client_id: str, stream_id: str, text: str, amount: int
    ) -> ReplyError | None:
        """Send a chat message for a decision and wait for it: None when accepted."""
        hub = self.hub
        message_id = new_event_id()
        event = ChatMessage(
            message_id=message_id,
            stream_id=stream_id,
            user=ChatUser(id=identity.user_id, name=identity.name),
            text=text,
            amount=amount,
            gateway_id=self.gateway_id,
            client_id=client_id,
            producer=COMPONENT,
        )
        room = await hub.acquire(stream_id)
        decision = hub.expect(message_id)
        try:
            try:
                await self.publish_event(event)
            except PublishFailed:
                return codes.INTERNAL
            try:
                return await asyncio.wait_for(decision, DECISION_TIMEOUT_S)
            except TimeoutError:
                return codes.DECISION_TIMEOUT
        finally:
            hub.forget(message_id)
            hub.release(room)

    async def publish_event(self, event: Event) -> None:
        """To JetStream with ``Nats-Msg-Id`` = event id; retried with the same id."""
        assert self._js is not None
        subject = event.subject()
        stream = stream_for_subject(subject).name
        payload = encode_event(event)
        headers = {MSG_ID_HEADER: event.event_id, "content-type": "application/json"}
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await self._js.publish(
                    subject, payload, stream=stream, timeout=PUBLISH_TIMEOUT_S, headers=headers
                )
                return
            except (NatsTimeoutError, NoRespondersError, TimeoutError) as exc:
                log.warning("chat publish retry", attempt=attempt, error=repr(exc))
                if attempt == PUBLISH_ATTEMPTS:
                    raise PublishFailed(str(exc)) from exc
                await asyncio.sleep(0.1 * attempt)


class PublishFailed(Exception):  # noqa: N818
    """JetStream did not take the event."""
