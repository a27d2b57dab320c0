"""presence_stats across gateway processes: each gateway announces its rooms over core NATS.

Every gateway publishes, for each room it hosts, who is in it — client count and user
ids (:class:`~events.chat_queries.PresenceAnnouncement`) — on
``rpc.chat.presence.<stream_id>``: shortly after a join or leave (``DEBOUNCE_S``) and
again every ``HEARTBEAT_S``. Every gateway listens to all of them and keeps the
latest per (room, gateway) until it expires (``TTL_S``: a gateway that died without a
word drops out on its own). ``presence_stats`` is then answered from memory: this
process's members plus every other gateway's fresh announcement, users counted once
across gateways (the ids are unioned, not the counts summed).

Why announcements rather than the alternatives: a request/reply scatter-gather would
make every ``presence_stats`` wait for the slowest gateway, or for a timeout when the
number of gateways is unknown; a JetStream KV bucket with a TTL would write ephemeral
data through JetStream's storage and need a consumer per read. Presence is soft
state: a few hundred milliseconds of lag are fine, a stall or a disk write per join
is not. (Centrifugo's Redis presence is the same idea: entries refreshed on an
interval, expiring when not.) A gateway that starts asks the others to announce
(``rpc.chat.presence-sync``) instead of waiting a heartbeat.

The subjects are under ``rpc.``: outside every JetStream stream, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common.logs import get_logger
from events.chat_queries import PRESENCE_SUBJECT, PRESENCE_SYNC_SUBJECT, PresenceAnnouncement

log = get_logger(__name__)

DEBOUNCE_S: Final = 0.1
HEARTBEAT_S: Final = 5.0
TTL_S: Final = 3 * HEARTBEAT_S
# Room size above which the user ids are left out of an announcement (NATS's default
# max payload is 1 MiB; a user id is ~36 bytes): that room's users are then summed
# across gateways rather than unioned.
MAX_ANNOUNCED_USERS: Final = 20_000

_decoder: Final = msgspec.json.Decoder(PresenceAnnouncement)
_encoder: Final = msgspec.json.Encoder()

# stream id → (clients, user ids) on this process
LocalPresence = Callable[[str], tuple[int, frozenset[str]]]


@dataclass(frozen=True, slots=True)
class _Entry:
    clients: int
    users: frozenset[str]
    user_count: int
    expires_at: float


class PresenceBoard:
    def __init__(
        self,
        nc: NatsClient,
        gateway_id: str,
        local: LocalPresence,
        rooms: Callable[[], list[str]],
        *,
        debounce_s: float = DEBOUNCE_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.nc = nc
        self.gateway_id = gateway_id
        self.local = local
        self.rooms = rooms
        self.debounce_s = debounce_s
        self.heartbeat_s = heartbeat_s
        self.ttl_s = 3 * heartbeat_s
        self._remote: dict[str, dict[str, _Entry]] = {}
        self._dirty: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._subs: list[Subscription] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._subs = [
            await self.nc.subscribe(f"{PRESENCE_SUBJECT}.*", cb=self._on_announcement),
            await self.nc.subscribe(PRESENCE_SYNC_SUBJECT, cb=self._on_sync),
        ]
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        await self.ask_all()

    async def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        # Leaving: the others drop this process's members now, not at expiry.
        with contextlib.suppress(Exception):
            for stream_id in self.rooms():
                await self._announce(stream_id, 0, frozenset())
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()

    async def ask_all(self) -> None:
        """Have every gateway announce its rooms now (start-up, after a reconnect)."""
        await self.nc.publish(PRESENCE_SYNC_SUBJECT, self.gateway_id.encode())

    # --- this process ---------------------------------------------------------------

    def changed(self, stream_id: str) -> None:
        """A member joined or left ``stream_id`` here: announce it soon (debounced)."""
        self._dirty.add(stream_id)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.debounce_s, self._spawn_flush)

    def _spawn_flush(self) -> None:
        self._flush = None
        dirty, self._dirty = self._dirty, set()
        task = asyncio.get_running_loop().create_task(self._announce_all(dirty))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _announce_all(self, stream_ids: set[str] | list[str]) -> None:
        for stream_id in stream_ids:
            clients, users = self.local(stream_id)
            try:
                await self._announce(stream_id, clients, users)
            except Exception as exc:  # NATS away: the next heartbeat repeats it
                log.warning("presence announcement failed", stream_id=stream_id, error=repr(exc))

    async def _announce(self, stream_id: str, clients: int, users: frozenset[str]) -> None:
        listed = sorted(users) if len(users) <= MAX_ANNOUNCED_USERS else []
        announcement = PresenceAnnouncement(
            gateway_id=self.gateway_id,
            stream_id=stream_id,
            clients=clients,
            user_count=len(users),
            users=listed,
            ttl_s=self.ttl_s,
        )
        await self.nc.publish(f"{PRESENCE_SUBJECT}.{stream_id}", _encoder.encode(announcement))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self._announce_all(self.rooms())
            self._expire()

    # --- the others ---------------------------------------------------------------------

    async def _on_announcement(self, msg: Msg) -> None:
        try:
            a = _decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        if a.gateway_id == self.gateway_id:
            return
        gateways = self._remote.setdefault(a.stream_id, {})
        if a.clients <= 0:
            gateways.pop(a.gateway_id, None)
            if not gateways:
                del self._remote[a.stream_id]
            return
        expires = asyncio.get_running_loop().time() + min(a.ttl_s, 10 * self.ttl_s)
        gateways[a.gateway_id] = _Entry(a.clients, frozenset(a.users), a.user_count, expires)

    async def _on_sync(self, msg: Msg) -> None:
        if msg.data.decode(errors="replace") == self.gateway_id:
            return
        await self._announce_all(self.rooms())

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for stream_id, gateways in list(self._remote.items()):
            for gateway_id, entry in list(gateways.items()):
                if entry.expires_at <= now:
                    del gateways[gateway_id]
            if not gateways:
                del self._remote[stream_id]

    # --- the answer ---------------------------------------------------------------------

    def stats(self, stream_id: str) -> tuple[int, int]:
        """Clients and distinct users in the channel, on every gateway."""
        clients, users = self.local(stream_id)
        now = asyncio.get_running_loop().time()
        union = set(users)
        unlisted = 0  # users of rooms too big to list: summed, not unioned
        for entry in self._remote.get(stream_id, {}).values():
            if entry.expires_at <= now:
                continue
            clients += entry.clients
            if entry.user_count > len(entry.users):
                unlisted += entry.user_count
            else:
                union |= entry.users
        return clients, len(union) + unlisted
