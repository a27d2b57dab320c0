"""The per-process fan-out: one room per channel with members, one NatsClient interest each.

A gateway process holds a :class:`Room` for every channel one of its clients is in
(or is publishing to). A room subscribes with raw nats-py — the hot path, no
FastStream (NOTES.md: ~90 µs per message less) — to ``chat.accepted.<stream_id>``,
``chat.effect.<stream_id>`` and ``chat.moderation.<stream_id>``: one subscription per
subject per channel per process, however many sockets watch it. Each accepted message
is decoded once and encoded once as a push; the pushes of one tick (at most one flush
per :meth:`Room.flush_interval`, at once when the room was quiet) are joined into one frame,
encoded once as a WebSocket frame, and the same bytes go to every member
(:class:`gateway.centrifuge.outbox.Outbox`: a member never makes the room wait).
Order and exactly-once per channel come from the offsets
(:mod:`gateway.centrifuge.sequencer`).

Empty rooms linger a little (a viewer reloading the page keeps the history warm),
then unsubscribe.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common.logs import get_logger
from events.catalog import ChatAccepted, ChatEffect, ChatModeration, ChatRejected
from events.chat_queries import MAX_HISTORY_LIMIT, HistoryQuery
from gateway.centrifuge import codes
from gateway.centrifuge.channels import (
    channel_name,
    effect_data,
    message_data,
    moderation_data,
)
from gateway.centrifuge.codes import ReplyError
from gateway.centrifuge.history import HistoryClient, HistoryUnavailable, page_pubs
from gateway.centrifuge.presence import PresenceBoard
from gateway.centrifuge.protocol import (
    StreamPosition,
    encode_json,
    encode_publication,
    encode_push_pub,
)
from gateway.centrifuge.sequencer import Pub, Sequencer
from gateway.centrifuge.session import HistoryResult, SubscribeResult
from gateway.centrifuge.wsframe import text_frame

log = get_logger(__name__)

RING_SIZE: Final = 200
# A busy room writes to its sockets once per tick: one frame per socket, whatever
# arrived meanwhile. A write costs ~10 µs of CPU here (syscall included), so the tick
# grows with the room to keep it near WRITES_PER_S: 1,000 members → 40 ms, 100 → 5 ms.
# A quiet room's message goes out at once; the tick only batches what follows it.
MIN_FLUSH_INTERVAL_S: Final = 0.005
MAX_FLUSH_INTERVAL_S: Final = 0.06
WRITES_PER_S: Final = 25_000
# Members written per turn of the event loop: a big room's flush (1,000 writes, ~15 ms
# on a busy machine) leaves the loop between slices, so a publish or a NATS message
# that arrives meanwhile waits for one slice, not for the whole room.
WRITE_SLICE: Final = 200
# A gap waits this long for the late offset before history is asked for it.
GAP_WAIT_S: Final = 0.3
GAP_ATTEMPTS: Final = 5
READY_TIMEOUT_S: Final = 5.0
LINGER_S: Final = 30.0
# Recovery from further back than the ring asks history for at most this many.
RECOVERY_LIMIT: Final = MAX_HISTORY_LIMIT

_accepted: Final = msgspec.json.Decoder(ChatAccepted)
_effect: Final = msgspec.json.Decoder(ChatEffect)
_moderation: Final = msgspec.json.Decoder(ChatModeration)
_rejected: Final = msgspec.json.Decoder(ChatRejected)


class Member(Protocol):
    """A client connection, as a room sees it."""

    @property
    def client_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    def deliver(self, frame: str) -> None:
        """Queue ``frame`` for the socket; never blocks (a slow one drops itself)."""

    def deliver_wire(self, frame: str, wire: bytes) -> None:
        """``deliver(frame)``, with ``wire`` the frame already encoded for the socket."""


class RoomUnavailable(Exception):  # noqa: N818
    """The room could not load its history in time (chat component unreachable)."""


class Room:
    def __init__(self, hub: ChatHub, stream_id: str) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self.channel = channel_name(stream_id)
        self._channel_json = encode_json(self.channel)
        self.sequencer = Sequencer(RING_SIZE)
        self.members: dict[str, Member] = {}
        self.users: Counter[str] = Counter()
        self.refs = 0  # publishes in flight through this process
        self.idle_since: float | None = None
        self._subs: list[Subscription] = []
        self._ready = asyncio.Event()
        self._last_effect_window = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self._loading = False
        self._gap_filling = False
        self._pending: list[bytes] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        # The frame being written: (members, next index, frame, wire bytes).
        self._writing: tuple[list[Member], int, str, bytes] | None = None
        self._next_slice: asyncio.Handle | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        nc = self.hub.nc
        sid = self.stream_id
        # Subscribed before the history is read, so nothing falls between the two:
        # what arrives meanwhile waits in the sequencer.
        self._subs = [
            await nc.subscribe(f"chat.accepted.{sid}", cb=self._on_accepted),
            await nc.subscribe(f"chat.effect.{sid}", cb=self._on_effect),
            await nc.subscribe(f"chat.moderation.{sid}", cb=self._on_moderation),
        ]
        self._spawn(self._load())

    async def stop(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._next_slice is not None:
            self._next_slice.cancel()
            self._next_slice = None
        self._writing = None
        self._pending.clear()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError as exc:
            raise RoomUnavailable(f"{self.channel}: history not loaded in {timeout_s} s") from exc

    async def _load(self, *, announce: bool = False) -> None:
        """Read the latest history and start the sequence there; retry until it works.

        ``announce``: the channel got a new epoch while members were in the room (its
        first message ever, or a history reset): they get the new history too.
        """
        if self._loading:
            return
        self._loading = True
        delay = 0.2
        try:
            while True:
                try:
                    page = await self.hub.archive.query(
                        HistoryQuery(stream_id=self.stream_id, limit=RING_SIZE)
                    )
                except HistoryUnavailable as exc:
                    log.warning("chat history unavailable", channel=self.channel, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                history = page_pubs(page)
                ready = self.sequencer.reset(page.epoch, page.offset, history)
                self._ready.set()
                if announce:
                    self._fan_out(history)
                self._fan_out(ready)
                self._check_gap()
                return
        finally:
            self._loading = False

    async def resync(self) -> None:
        """After a NatsClient reconnect: fetch what may have been missed meanwhile."""
        if not self.sequencer.ready:
            return
        try:
            page = await self.hub.archive.query(
                HistoryQuery(
                    stream_id=self.stream_id,
                    after_offset=self.sequencer.top,
                    limit=MAX_HISTORY_LIMIT,
                )
            )
        except HistoryUnavailable as exc:
            log.warning("resync failed", channel=self.channel, error=str(exc))
            return
        if page.epoch != self.sequencer.epoch:
            self._restart()
            return
        self._fan_out(self.sequencer.fill(page_pubs(page)))

    def _restart(self) -> None:
        if self.sequencer.epoch:
            log.warning("chat epoch changed, reloading", channel=self.channel)
        self.sequencer = Sequencer(RING_SIZE)
        self._ready.clear()
        self._spawn(self._load(announce=True))

    # --- members ------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        self.members[member.client_id] = member
        if member.user_id:
            self.users[member.user_id] += 1
        self.idle_since = None
        self.hub.presence.changed(self.stream_id)

    def remove(self, member: Member) -> None:
        if self.members.pop(member.client_id, None) is None:
            return
        if member.user_id:
            self.users[member.user_id] -= 1
            if self.users[member.user_id] <= 0:
                del self.users[member.user_id]
        self.hub.presence.changed(self.stream_id)

    @property
    def idle(self) -> bool:
        return not self.members and self.refs == 0

    # --- NatsClient -----------------------------------------------------------------------------

    async def _on_accepted(self, msg: Msg) -> None:
        try:
            event = _accepted.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable chat.accepted", subject=msg.subject)
            return
        self.hub.resolve(event.message_id, None)
        pub = Pub.build(event.offset, event.message_id, message_data(event))
        ready = self.sequencer.offer(pub, event.epoch)
        if ready is None:
            self._restart()
            return
        self._fan_out(ready)
        self._check_gap()

    async def _on_effect(self, msg: Msg) -> None:
        try:
            event = _effect.decode(msg.data)
        except msgspec.DecodeError:
            return
        # Each window once, even if two chat workers both flushed it.
        if event.window_start_ms <= self._last_effect_window:
            return
        self._last_effect_window = event.window_start_ms
        self._push(encode_publication(effect_data(event)))

    async def _on_moderation(self, msg: Msg) -> None:
        try:
            event = _moderation.decode(msg.data)
        except msgspec.DecodeError:
            return
        if event.message_id:
            self.hub.resolve(event.message_id, None)
        if event.action == "clear" and event.through_offset:
            self.sequencer.clear_through(event.through_offset)
        self._push(encode_publication(moderation_data(event)))

    # --- delivery -----------------------------------------------------------------------------

    def _fan_out(self, pubs: list[Pub]) -> None:
        for pub in pubs:
            self._push(pub.encoded)

    def _push(self, publication: bytes) -> None:
        if not self.members:
            return
        self._pending.append(encode_push_pub(self._channel_json, publication))
        if self._flush_at is None:
            loop = asyncio.get_running_loop()
            at = max(loop.time(), self._last_flush + self.flush_interval())
            self._flush_at = loop.call_at(at, self.flush)

    def flush_interval(self) -> float:
        interval = len(self.members) / WRITES_PER_S
        return min(MAX_FLUSH_INTERVAL_S, max(MIN_FLUSH_INTERVAL_S, interval))

    def flush(self) -> None:
        """Write the pending pushes to every member: one frame, encoded once, written a
        slice of members per loop turn (the frame before is finished first: order)."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        self._write(everything=True)
        self._last_flush = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, []
        if not pending or not self.members:
            return
        payload = b"\n".join(pending)
        frame, wire = payload.decode(), text_frame(payload)
        self.hub.delivered += len(pending) * len(self.members)
        # A snapshot: a member that overflows closes itself and leaves the dict; one that
        # joins meanwhile had these pushes in its subscribe reply.
        self._writing = (list(self.members.values()), 0, frame, wire)
        self._write()

    def _write(self, *, everything: bool = False) -> None:
        """The current frame to its next slice of members (to all that are left with
        ``everything``); the rest on the loop's next turn."""
        if self._next_slice is not None:
            self._next_slice.cancel()
            self._next_slice = None
        if self._writing is None:
            return
        members, start, frame, wire = self._writing
        end = len(members) if everything else start + WRITE_SLICE
        for member in members[start:end]:
            member.deliver_wire(frame, wire)
        if end < len(members):
            self._writing = (members, end, frame, wire)
            self._next_slice = asyncio.get_running_loop().call_soon(self._write)
        else:
            self._writing = None

    def _check_gap(self) -> None:
        if self.sequencer.missing() is not None and not self._gap_filling:
            self._gap_filling = True
            self._spawn(self._fill_gap())

    async def _fill_gap(self) -> None:
        try:
            for attempt in range(GAP_ATTEMPTS):
                await asyncio.sleep(GAP_WAIT_S * (attempt + 1))
                gap = self.sequencer.missing()
                if gap is None:
                    return
                first, last = gap
                try:
                    page = await self.hub.archive.query(
                        HistoryQuery(
                            stream_id=self.stream_id,
                            after_offset=first - 1,
                            limit=min(last - first + 1, MAX_HISTORY_LIMIT),
                        )
                    )
                except HistoryUnavailable as exc:
                    log.warning("gap fill failed", channel=self.channel, error=str(exc))
                    continue
                if page.epoch == self.sequencer.epoch:
                    self._fan_out(self.sequencer.fill(page_pubs(page)))
            if self.sequencer.missing() is not None:
                log.error("chat gap abandoned", channel=self.channel, gap=self.sequencer.missing())
                self._fan_out(self.sequencer.skip_gap())
        finally:
            self._gap_filling = False
            if self.sequencer.missing() is not None:
                self._check_gap()

    # --- subscribe / history --------------------------------------------------------------------

    async def subscribe(
        self,
        member: Member,
        since: StreamPosition | None,
        history_size: int,
        reply: Callable[[SubscribeResult], None],
    ) -> None:
        """Answer the subscribe (history or recovery) and join, with nothing in between.

        ``reply`` queues the subscribe reply; it runs in the same step as the join, so
        the first push the member gets is the one after the reply's last publication.
        """
        await self.wait_ready()
        seq = self.sequencer
        result: SubscribeResult
        if since is not None and since.epoch == seq.epoch:
            recovered = seq.since(since.offset)
            if recovered is None:
                recovered = await self._recover_from_history(since.offset)
            if recovered is not None:
                result = SubscribeResult(
                    recoverable=True,
                    epoch=seq.epoch,
                    offset=seq.top,
                    publications=[msgspec.Raw(p.encoded) for p in recovered],
                    recovered=True,
                    was_recovering=True,
                )
                self.flush()  # pending pushes are in the reply: for the others only
                reply(result)
                self.add(member)
                return
        latest = seq.latest(history_size)
        result = SubscribeResult(
            recoverable=True,
            epoch=seq.epoch,
            offset=seq.top,
            publications=[msgspec.Raw(p.encoded) for p in latest],
            recovered=False,
            was_recovering=since is not None,
        )
        self.flush()
        reply(result)
        self.add(member)

    async def _recover_from_history(self, offset: int) -> list[Pub] | None:
        """Publications after ``offset`` when the ring does not reach back; None if
        they cannot all be had (too many: the client starts over from the latest)."""
        try:
            page = await self.hub.archive.query(
                HistoryQuery(stream_id=self.stream_id, after_offset=offset, limit=RECOVERY_LIMIT)
            )
        except HistoryUnavailable:
            return None
        if page.epoch != self.sequencer.epoch or not page.complete:
            return None
        fetched = page_pubs(page)
        # What the room delivered while the query ran continues the page.
        newest = fetched[-1].offset if fetched else offset
        live = self.sequencer.since(newest)
        if live is None:
            return None
        pubs = fetched + live
        expected = list(range(offset + 1, offset + 1 + len(pubs)))
        if [p.offset for p in pubs] != expected or (pubs and pubs[-1].offset != self.sequencer.top):
            return None
        return pubs

    async def history(
        self, limit: int, since: StreamPosition | None, reverse: bool
    ) -> HistoryResult | ReplyError:
        """Centrifugo's history semantics: ``limit`` 0 → position only; no ``since`` →
        from the oldest kept (``reverse``: from the newest); ``since`` → after it."""
        await self.wait_ready()
        seq = self.sequencer
        if since is not None and since.epoch != seq.epoch:
            return codes.UNRECOVERABLE_POSITION
        if limit == 0:
            return HistoryResult(epoch=seq.epoch, offset=seq.top)
        query: HistoryQuery
        if since is None:
            query = (
                HistoryQuery(stream_id=self.stream_id, limit=limit)
                if reverse
                else HistoryQuery(stream_id=self.stream_id, after_offset=0, limit=limit)
            )
        elif reverse:
            query = HistoryQuery(stream_id=self.stream_id, before_offset=since.offset, limit=limit)
        else:
            query = HistoryQuery(stream_id=self.stream_id, after_offset=since.offset, limit=limit)
        try:
            page = await self.hub.archive.query(query)
        except HistoryUnavailable:
            return codes.INTERNAL
        pubs = page_pubs(page)
        if reverse:
            pubs.reverse()
        return HistoryResult(
            publications=[msgspec.Raw(p.encoded) for p in pubs],
            epoch=page.epoch,
            offset=page.offset,
        )


class ChatHub:
    def __init__(
        self,
        nc: NatsClient,
        *,
        gateway_id: str,
        history_size: int = 50,
        linger_s: float = LINGER_S,
    ) -> None:
        self.nc = nc
        self.gateway_id = gateway_id
        self.archive = HistoryClient(nc)
        self.history_size = history_size
        self.linger_s = linger_s
        self.rooms: dict[str, Room] = {}
        self._opening: dict[str, asyncio.Future[Room]] = {}
        self._waiters: dict[str, asyncio.Future[ReplyError | None]] = {}
        self._rejected_sub: Subscription | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.delivered = 0  # frames queued to members, for metrics and benchmarks
        self.presence = PresenceBoard(
            nc, gateway_id, self._local_presence, lambda: list(self.rooms)
        )

    async def start(self) -> None:
        # Rejections go to the sender only: every gateway hears them all and keeps
        # those addressed to it (gateway_id). They are rare.
        self._rejected_sub = await self.nc.subscribe("chat.rejected.*", cb=self._on_rejected)
        self._janitor = asyncio.get_running_loop().create_task(self._sweep())
        await self.presence.start()

    async def stop(self) -> None:
        await self.presence.stop()
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        if self._rejected_sub is not None:
            with contextlib.suppress(Exception):
                await self._rejected_sub.unsubscribe()
        for room in list(self.rooms.values()):
            await room.stop()
        self.rooms.clear()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(codes.INTERNAL)

    async def resync(self) -> None:
        with contextlib.suppress(Exception):
            await self.presence.ask_all()  # what the others announced meanwhile
        for room in list(self.rooms.values()):
            await room.resync()

    async def room(self, stream_id: str) -> Room:
        """The channel's room, opened (NatsClient subscriptions live) if needed."""
        room = self.rooms.get(stream_id)
        if room is not None:
            return room
        opening = self._opening.get(stream_id)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._opening[stream_id] = future
        room = Room(self, stream_id)
        try:
            await room.start()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self._opening[stream_id]
        self.rooms[stream_id] = room
        future.set_result(room)
        return room

    async def join(
        self,
        member: Member,
        stream_id: str,
        since: StreamPosition | None,
        reply: Callable[[SubscribeResult], None],
    ) -> None:
        room = await self.room(stream_id)
        room.refs += 1  # held open while the subscribe is in progress
        try:
            await room.subscribe(member, since, self.history_size, reply)
        finally:
            room.refs -= 1
            self._mark_idle(room)

    def leave(self, member: Member, stream_id: str) -> None:
        room = self.rooms.get(stream_id)
        if room is not None:
            room.remove(member)
            self._mark_idle(room)

    def presence_stats(self, stream_id: str) -> tuple[int, int]:
        """Clients and distinct users in the channel, on every gateway process."""
        return self.presence.stats(stream_id)

    def _local_presence(self, stream_id: str) -> tuple[int, frozenset[str]]:
        room = self.rooms.get(stream_id)
        if room is None:
            return 0, frozenset()
        return len(room.members), frozenset(room.users)

    async def history(
        self, stream_id: str, limit: int, since: StreamPosition | None, reverse: bool
    ) -> HistoryResult | ReplyError:
        room = await self.room(stream_id)
        room.refs += 1
        try:
            return await room.history(limit, since, reverse)
        finally:
            room.refs -= 1
            self._mark_idle(room)

    # --- publish outcomes ---------------------------------------------------------------------

    async def acquire(self, stream_id: str) -> Room:
        """Keep the room open while a publish waits for its decision."""
        room = await self.room(stream_id)
        room.refs += 1
        room.idle_since = None
        return room

    def release(self, room: Room) -> None:
        room.refs -= 1
        self._mark_idle(room)

    def expect(self, message_id: str) -> asyncio.Future[ReplyError | None]:
        future: asyncio.Future[ReplyError | None] = asyncio.get_running_loop().create_future()
        self._waiters[message_id] = future
        return future

    def forget(self, message_id: str) -> None:
        self._waiters.pop(message_id, None)

    def resolve(self, message_id: str, error: ReplyError | None) -> None:
        waiter = self._waiters.pop(message_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(error)

    async def _on_rejected(self, msg: Msg) -> None:
        try:
            event = _rejected.decode(msg.data)
        except msgspec.DecodeError:
            return
        if event.gateway_id != self.gateway_id:
            return
        self.resolve(event.message_id, codes.chat_error(event.code, event.reason))

    # --- idle rooms ------------------------------------------------------------------------------

    def _mark_idle(self, room: Room) -> None:
        if room.idle and room.idle_since is None:
            room.idle_since = asyncio.get_running_loop().time()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(self.linger_s, 5.0))
            now = loop.time()
            for stream_id, room in list(self.rooms.items()):
                idle_since = room.idle_since
                if room.idle and idle_since is not None and now - idle_since >= self.linger_s:
                    del self.rooms[stream_id]
                    await room.stop()
