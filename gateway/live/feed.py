"""The gateway's view of the bus for live streams: a raw subscription plus a catch-up.

Hot path: several part events per second per stream reach every gateway process, so
this is a plain nats-py subscription on ``stream.>`` (NOTES.md: FastStream adds ~90 µs
a message), one per process, no queue group — every gateway must see every event. One
subscription keeps the publisher's order (started, parts, segment, ended); the state
is order-tolerant anyway.

Ack policy: none. These are core-NATS deliveries of JetStream-stored events; a message
missed while disconnected is recovered by the catch-up, not by redelivery.

Catch-up (at start and after every reconnect): the last ``stream.started`` and
``stream.ended`` of every stream from ``STREAMS`` (deliver-last-per-subject), then the
recent parts and segments of the live ones from ``LIVE_MEDIA`` (by start time, one
window back). Live messages that arrive meanwhile are held and applied afterwards, so a
fresh gateway serves the same complete playlist as one that was up all along.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from common.logs import get_logger
from common.settings import split_nats_url
from events.catalog import decode_event
from events.envelope import Event
from events.replay import StoredReader
from events.streams import LIVE_MEDIA, STREAMS
from gateway.live.state import LiveState

log = get_logger(__name__)

SUBJECT = "stream.>"
LIFECYCLE_SUBJECTS = ("stream.started.>", "stream.ended.>")
# Read this much more than the window back, for segments published late.
CATCH_UP_MARGIN_S = 10.0
FETCH_BATCH = 256
FETCH_TIMEOUT_S = 2.0
CONSUMER_INACTIVE_S = 30.0
SWEEP_INTERVAL_S = 10.0


class LiveFeed:
    def __init__(self, state: LiveState, nats_url: str, *, name: str = "gateway-live") -> None:
        self.state = state
        self._url = nats_url
        self._name = name
        self._nc: Client | None = None
        self._sub: Subscription | None = None
        self._held: list[Event] | None = None  # live events held during a catch-up
        self._catch_up_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._bad_messages = 0
        self.applied = 0

    async def start(self) -> None:
        self._nc = await nats.connect(
            split_nats_url(self._url),
            name=f"videopick-{self._name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            reconnected_cb=self._on_reconnected,
        )
        self._held = []
        self._sub = await self._nc.subscribe(SUBJECT, cb=self._on_message)
        await self.catch_up()
        self._spawn(self._sweep_forever())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._nc is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.drain()
            self._nc = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_reconnected(self) -> None:
        log.info("live feed reconnected; catching up")
        self._spawn(self.catch_up())

    async def _on_message(self, msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._bad_messages += 1
            if self._bad_messages == 1 or self._bad_messages % 1000 == 0:
                log.warning("undecodable stream event ignored", subject=msg.subject)
            return
        if self._held is not None:
            self._held.append(event)
        else:
            self._apply(event)

    def _apply(self, event: Event) -> None:
        self.state.apply(event)
        self.applied += 1

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.state.sweep()

    # -- catch-up ------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Load live broadcasts from JetStream; live events wait until it is done."""
        nc = self._nc
        assert nc is not None
        async with self._catch_up_lock:
            if self._held is None:
                self._held = []
            try:
                js = nc.jetstream()
                for event in await self._lifecycle(js):
                    self._apply(event)
                await self._media(js)
            except (nats.errors.Error, TimeoutError, NotFoundError) as exc:
                log.warning("live catch-up incomplete", error=repr(exc))
            finally:
                held, self._held = self._held or [], None
                for event in held:
                    self._apply(event)

    async def _lifecycle(self, js: JetStreamContext) -> list[Event]:
        name = f"vp-live-{secrets.token_hex(6)}"
        config = ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            filter_subjects=list(LIFECYCLE_SUBJECTS),
            inactive_threshold=CONSUMER_INACTIVE_S,
            mem_storage=True,
        )
        created = await js.add_consumer(STREAMS.name, config)
        pending = created.num_pending or 0
        events: list[Event] = []
        sub = await js.pull_subscribe_bind(name, stream=STREAMS.name)
        try:
            while pending > 0:
                for msg in await sub.fetch(min(FETCH_BATCH, pending), timeout=FETCH_TIMEOUT_S):
                    pending = msg.metadata.num_pending
                    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                        events.append(decode_event(msg.data))
        finally:
            with contextlib.suppress(nats.errors.Error, NotFoundError):
                await sub.unsubscribe()
                await js.delete_consumer(STREAMS.name, name)
        return events

    async def _media(self, js: JetStreamContext) -> None:
        sessions = self.state.live_sessions()
        if not sessions:
            return
        now = datetime.now(UTC)
        since = min(
            max(
                s.started_at,
                now - timedelta(seconds=s.window_s + 3 * s.target_duration + CATCH_UP_MARGIN_S),
            )
            for s in sessions
        )
        # A little before the first started event: clocks of two hosts differ.
        since -= timedelta(seconds=1)
        wanted = {s.session_id for s in sessions}
        async with StoredReader(js, SUBJECT, since=since, stream=LIVE_MEDIA.name) as reader:
            async for record in reader:
                try:
                    event = decode_event(record.data)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
                if getattr(event, "session_id", None) in wanted:
                    self._apply(event)
