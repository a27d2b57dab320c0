"""``/connection/websocket``: the I/O around :class:`~gateway.centrifuge.session.Session`.

A raw ASGI handler (no per-message framework work on the hot path). Per connection:

- before the upgrade: a foreign ``Origin`` gets 403 and no WebSocket;
- a reader: each text frame goes to the session; its actions are carried out in
  order (connect, subscribe and history are awaited, so the replies keep command
  order; a publish waits for its decision in its own task);
- a writer: drains the connection's :class:`~gateway.centrifuge.outbox.Outbox`, one
  WebSocket frame per wake-up — unless the server lets us write pre-encoded frames to
  the socket's transport ourselves (``wsframe``): then every reply and push is written
  at once, in order, and there is no writer task;
- a ticker: server pings, stale and no-pong timeouts (``Session.tick``).

Limits: a frame over ``chat_ws_max_frame_bytes`` closes with 1009; a reader so slow
that ``chat_ws_queue_max_bytes`` wait for it is closed with 3008 "slow" and its queue
dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, Final

from litestar import asgi
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send
from litestar.types.asgi_types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    WebSocketCloseEvent,
    WebSocketResponseBodyEvent,
    WebSocketResponseStartEvent,
    WebSocketSendEvent,
)

from common.logs import get_logger
from events.envelope import new_event_id
from gateway.centrifuge import codes
from gateway.centrifuge.codes import Disconnect
from gateway.centrifuge.hub import RoomUnavailable
from gateway.centrifuge.origin import origin_allowed
from gateway.centrifuge.outbox import Outbox
from gateway.centrifuge.service import ChatGateway
from gateway.centrifuge.session import (
    Action,
    Authenticate,
    Close,
    History,
    Identity,
    PresenceStats,
    PresenceStatsResult,
    Publish,
    Session,
    Subscribe,
    SubscribeResult,
    Unsubscribe,
    Write,
)
from gateway.centrifuge.wsframe import raw_transport

log = get_logger(__name__)

PATH: Final = "/connection/websocket"
STATE_KEY: Final = "chat"
TICK_S: Final = 1.0
CLOSE_TIMEOUT_S: Final = 2.0
FLUSH_TIMEOUT_S: Final = 1.0


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _close_event(code: int, reason: str = "") -> WebSocketCloseEvent:
    return {"type": "websocket.close", "code": code, "reason": reason}


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    """Refuse the handshake: a JSON problem where the server can send one (ASGI's
    WebSocket Denial Response extension), else a bare 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = b'{"type":"/problems/forbidden","title":"Forbidden","status":%d,"detail":"%s"}' % (
            status,
            detail.encode(),
        )
        start: WebSocketResponseStartEvent = {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        end: WebSocketResponseBodyEvent = {
            "type": "websocket.http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(start)
        await send(end)
    else:
        await send(_close_event(1008))


async def _not_websocket(send: Send) -> None:
    body = (
        b'{"type":"/problems/upgrade-required","title":"Upgrade required","status":426,'
        b'"detail":"this is a WebSocket endpoint (Centrifugo client protocol, JSON)"}'
    )
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 426,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"upgrade", b"websocket"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


@asgi(PATH, copy_scope=False, include_in_schema=False)
async def centrifugo_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """The Centrifugo client protocol (JSON) over WebSocket; see the module docstring."""
    if scope["type"] != ScopeType.WEBSOCKET:
        await _not_websocket(send)
        return
    chat = getattr(scope["litestar_app"].state, STATE_KEY, None)
    if not isinstance(chat, ChatGateway):
        await send(_close_event(1013))  # "try again later": the app is starting or stopping
        return
    if not origin_allowed(_header(scope, b"origin"), chat.allowed_origins):
        log.info("chat websocket refused: foreign origin", origin=_header(scope, b"origin"))
        await _refuse(scope, send, 403, "origin not allowed")
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    await Connection(chat, receive, send, raw_transport(send)).run()


async def _idle() -> None:
    """The writer of a direct connection: nothing to do (deliver writes at once)."""


class Connection:
    """One accepted WebSocket; also the hub's :class:`~gateway.centrifuge.hub.Member`."""

    def __init__(
        self,
        chat: ChatGateway,
        receive: Receive,
        send: Send,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.chat = chat
        self._receive = receive
        self._send = send
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.session = Session(
            client_id=new_event_id(),
            config=chat.limits.session_config(),
            opened_at=loop.time(),
        )
        self.outbox = Outbox(chat.limits.queue_max_bytes, transport)
        self._done = asyncio.Event()
        self._closing: Disconnect | None = None
        self._peer_gone = False
        self._tasks: set[asyncio.Task[None]] = set()

    # Member protocol
    @property
    def client_id(self) -> str:
        return self.session.client_id

    @property
    def user_id(self) -> str:
        return self.session.identity.user_id

    def deliver(self, frame: str) -> None:
        if not self.outbox.put(frame):
            self._refused()

    def deliver_wire(self, frame: str, wire: bytes) -> None:
        """A room's batch: ``wire`` is ``frame`` as one encoded WebSocket frame, the same
        bytes for every member."""
        written = self.outbox.put_wire(wire) if self.outbox.direct else self.outbox.put(frame)
        if not written:
            self._refused()

    def _refused(self) -> None:
        outbox = self.outbox
        if outbox.overflowed and not outbox.closed:
            log.warning("chat client too slow, dropping", client=self.client_id)
            outbox.close()  # the memory goes back now, not when the socket dies
            if outbox.transport is not None:
                # What sits in the transport's buffer goes back once the close frame
                # had its chance (a reader that never reads never takes it).
                self._loop.call_later(CLOSE_TIMEOUT_S, outbox.transport.abort)
            self._finish(codes.SLOW)

    def _finish(self, disconnect: Disconnect | None) -> None:
        if self._closing is None and disconnect is not None:
            self._closing = disconnect
        self._done.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        self.chat.connections += 1
        reader = self._loop.create_task(self._reader())
        writer = self._loop.create_task(self._writer() if not self.outbox.direct else _idle())
        ticker = self._loop.create_task(self._ticker())
        try:
            await self._done.wait()
        finally:
            self.chat.connections -= 1
            reader.cancel()
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            self._leave_all()
            await self._shutdown(writer)
            for task in (reader, ticker, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _leave_all(self) -> None:
        hub = self.chat.hub
        for channel in list(self.session.channels):
            stream_id = channel.partition(":")[2]
            hub.leave(self, stream_id)
        self.session.channels.clear()
        self.session.close()

    async def _shutdown(self, writer: asyncio.Task[None]) -> None:
        disconnect = self._closing
        if not self._peer_gone and disconnect is not None and disconnect is not codes.SLOW:
            # Let queued replies (e.g. the error that explains the close) go out first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.drained(), FLUSH_TIMEOUT_S)
        self.outbox.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        if self._peer_gone:
            return
        code, reason = (disconnect.code, disconnect.reason) if disconnect else (1000, "")
        # A slow reader's socket may never drain: do not wait for it forever.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._send(_close_event(code, reason)), CLOSE_TIMEOUT_S)

    # --- tasks ------------------------------------------------------------------------------

    async def _reader(self) -> None:
        limit = self.chat.limits.max_frame_bytes
        try:
            while not self._done.is_set():
                message = await self._receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    self._peer_gone = True
                    self._finish(None)
                    return
                if kind != "websocket.receive":
                    continue
                text, raw = message.get("text"), message.get("bytes")
                data = text if isinstance(text, str) else raw if isinstance(raw, bytes) else b""
                if len(data) > limit:
                    log.info("chat frame too big", client=self.client_id, size=len(data))
                    self._finish(codes.MESSAGE_TOO_BIG)
                    return
                await self._apply(self.session.receive(data))
        except Exception:
            log.exception("chat connection failed", client=self.client_id)
            self._finish(codes.SERVER_ERROR)

    async def _writer(self) -> None:
        try:
            while True:
                frame = await self.outbox.take()
                if self.outbox.closed:
                    return
                event: WebSocketSendEvent = {"type": "websocket.send", "text": frame, "bytes": None}
                await self._send(event)
        except asyncio.CancelledError:
            raise
        except Exception:  # the peer went away mid-write
            self._peer_gone = True
            self._finish(None)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self._apply(self.session.tick(self._loop.time()))

    # --- actions ------------------------------------------------------------------------------

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if self._done.is_set():
                return
            await self._do(action)

    async def _do(self, action: Action) -> None:
        session = self.session
        match action:
            case Write(data=data):
                self.deliver(data.decode())
            case Close(disconnect=disconnect):
                self._finish(disconnect)
            case Authenticate():
                outcome = await self.chat.authenticate(action.token)
                if isinstance(outcome, Identity):
                    now = self._loop.time()
                    await self._apply(session.connected(action.command_id, outcome, now))
                else:
                    await self._apply(session.connect_refused(action.command_id, outcome))
            case Subscribe():
                await self._subscribe(action)
            case Unsubscribe(stream_id=stream_id):
                self.chat.hub.leave(self, stream_id)
            case Publish():
                self._spawn(self._publish(action))
            case History():
                await self._history(action)
            case PresenceStats(stream_id=stream_id):
                clients, users = self.chat.hub.presence_stats(stream_id)
                stats = PresenceStatsResult(num_clients=clients, num_users=users)
                self.deliver(session.presence_stats(action.command_id, stats).decode())

    async def _history(self, action: History) -> None:
        try:
            result = await self.chat.hub.history(
                action.stream_id, action.limit, action.since, action.reverse
            )
        except RoomUnavailable:
            result = codes.INTERNAL
        if isinstance(result, codes.ReplyError):
            self.deliver(self.session.error(action.command_id, result).decode())
        else:
            self.deliver(self.session.history(action.command_id, result).decode())

    async def _subscribe(self, action: Subscribe) -> None:
        session = self.session

        def reply(result: SubscribeResult) -> None:
            self.deliver(session.subscribed(action.command_id, result).decode())

        try:
            await self.chat.hub.join(self, action.stream_id, action.since, reply)
        except RoomUnavailable:
            error = session.subscribe_failed(action.command_id, action.channel, codes.INTERNAL)
            self.deliver(error.decode())
        if self._done.is_set() or action.channel not in session.channels:
            # Closed, or unsubscribed while the subscribe waited: do not stay a member.
            self.chat.hub.leave(self, action.stream_id)

    async def _publish(self, action: Publish) -> None:
        try:
            error = await self.chat.publish(
                self.session.identity, self.client_id, action.stream_id, action.text, action.amount
            )
        except Exception:
            log.exception("chat publish failed", client=self.client_id)
            error = codes.INTERNAL
        self.deliver(self.session.published(action.command_id, error).decode())
