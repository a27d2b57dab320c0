"""A broadcast's resumable state, shared by every ingest process through JetStream KV.

``videopick up`` runs one ingest process per core on one RTMP port and infra/ runs
replicas: a publisher's reconnect may land on any of them. So the state a reconnect
needs (:class:`Shared`) lives in the KV bucket ``ingest_broadcasts``, one key per
channel, every write a compare-and-set on the key's revision:

- ``live``: a process packages the channel (written when a broadcast starts or is
  continued). A reconnect elsewhere waits a moment for it to become ``lingering`` —
  the old connection's last media is still being stored.
- ``lingering``: the publisher dropped; the record carries the session id, the
  packager's :class:`~ingest.packager.packager.Resume`, the stored segments (for the
  recording's VOD playlist), the duration and ``stream.started``, and the window's
  wall-clock deadline. Whichever process takes the reconnect claims it (CAS to
  ``live``) and continues the broadcast; it tells the old owner on
  ``ingest.adopted.{stream_id}`` (core NATS) so its linger timer stops at once. The
  old owner's timer itself ends the broadcast only if its CAS to ``ending`` wins.
- ``ending``: one process is announcing the end; the key is deleted afterwards.

A crash of the process holding a lingering broadcast loses nothing: the record is
in the bus, not the process, so a reconnect within the window on another process
still continues it; and if nobody comes back, every process's periodic sweep sees a
record whose deadline passed ``ORPHAN_GRACE_S`` ago, one of them wins the CAS to
``ending`` and ends the broadcast with ``stream.ended`` and its recording (built from
the store, its VOD playlist from the record); a new publish of the channel that finds
such a record ends it the same way before its own broadcast replaces the record.
Ending it cleanly rather than keeping it open forever is the only choice once the
window is over. A crash while the publisher is still connected is not covered: the
segment list then lived only in that process (its media stays in the store; the lease
lapses and the channel is free).

Why KV and not a column of :class:`~ingest.keys.PublisherLeases`' table: the lease
says who may publish (it must hold while the database is the source of truth for
keys); this record is media state that ends with the broadcast, is read on every
reconnect by processes already on the bus, and needs a compare-and-set plus a
notice to the old owner — both of which NATS gives without a migration.

The record holds one small tuple per segment: a value stays under NATS's default
1 MiB payload for about ten hours of 1 s segments.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from common.logs import get_logger
from events.catalog import StreamStarted

__all__ = ["BUCKET", "ORPHAN_GRACE_S", "BroadcastHandoff", "Shared"]

log = get_logger(__name__)

BUCKET: Final = "ingest_broadcasts"
ADOPTED_SUBJECT: Final = "ingest.adopted"  # + ".{stream_id}"; no JetStream stream takes it
# After the deadline, the owner's own timer has this long to end the broadcast before
# the other processes treat the owner as gone.
ORPHAN_GRACE_S: Final = 5.0
# A record outlives any broadcast's window by far; the bucket forgets leftovers.
BUCKET_TTL_S: Final = 24 * 3600.0

State = Literal["live", "lingering", "ending"]


class Shared(msgspec.Struct, kw_only=True):
    """One channel's broadcast as the other ingest processes see it."""

    state: State
    owner: str  # the ingest process (LivePackaging.instance) that wrote it
    session_id: str
    user_id: str = ""
    deadline: float = 0.0  # unix time the reconnect window closes (lingering)
    reason: str = ""  # the dropped connection's close reason
    # Resume: (next media sequence, media seconds so far, last mfhd sequence, PART-TARGET)
    resume: tuple[int, float, int, float] | None = None
    has_init: bool = False  # the init segment is in the store under the session's key
    started_event: StreamStarted | None = None
    started: bool = False
    stored_segments: int = 0
    # (sequence, duration_s, discontinuity, byte_size) of every stored segment
    segments: list[tuple[int, float, bool, int]] = msgspec.field(default_factory=list)
    duration_s: float = 0.0
    created_at: float = 0.0  # unix time of the first publish


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Shared)


class BroadcastHandoff:
    """The ``ingest_broadcasts`` bucket and the adopted notices, on the broker's client.

    ``connection`` is called at each use: the broker connects after this is built.
    """

    def __init__(self, connection: Callable[[], Client], instance: str, replicas: int = 1) -> None:
        self._connection = connection
        self.instance = instance
        self._replicas = replicas  # settings.nats_replicas, as the event streams have
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            js = self._connection().jetstream()
            try:
                self._kv = await js.key_value(BUCKET)
            except BucketNotFoundError:
                self._kv = await js.create_key_value(
                    bucket=BUCKET, history=1, ttl=BUCKET_TTL_S, replicas=self._replicas
                )
        return self._kv

    async def read(self, stream_id: str) -> tuple[Shared, int] | None:
        """The channel's record and its revision, or None."""
        kv = await self._bucket()
        try:
            entry = await kv.get(stream_id)
        except KeyNotFoundError:  # also a deleted key
            return None
        if not entry.value:
            return None
        try:
            return _decoder.decode(entry.value), entry.revision or 0
        except msgspec.DecodeError:
            log.warning("unreadable broadcast record ignored", stream_id=stream_id)
            return None

    async def write(self, stream_id: str, record: Shared, last: int | None) -> int | None:
        """Store ``record`` if the key is still at revision ``last`` (None: whatever it
        holds); the new revision, or None if another process wrote first."""
        kv = await self._bucket()
        data = _encoder.encode(record)
        if last is None:
            return await kv.put(stream_id, data)
        try:
            return await kv.update(stream_id, data, last=last)
        except KeyWrongLastSequenceError:
            return None

    async def forget(self, stream_id: str, last: int) -> None:
        """Delete the record if it is still at revision ``last`` (a new broadcast's stays)."""
        kv = await self._bucket()
        try:
            await kv.delete(stream_id, last=last)
        except Exception as exc:  # a leftover ended record is harmless; TTL takes it
            log.info("broadcast record not deleted", stream_id=stream_id, error=repr(exc))

    async def expired(self, grace_s: float = ORPHAN_GRACE_S) -> list[tuple[str, Shared, int]]:
        """Lingering records whose window closed more than ``grace_s`` ago."""
        kv = await self._bucket()
        try:
            names = await kv.keys()
        except NoKeysError:
            return []
        now = time.time()
        found: list[tuple[str, Shared, int]] = []
        for name in names:
            got = await self.read(name)
            if got is not None and got[0].state == "lingering" and got[0].deadline + grace_s < now:
                found.append((name, *got))
        return found

    async def announce_adopted(self, stream_id: str, session_id: str) -> None:
        body = _encoder.encode({"session_id": session_id, "by": self.instance})
        await self._connection().publish(f"{ADOPTED_SUBJECT}.{stream_id}", body)

    async def on_adopted(
        self, callback: Callable[[str, str, str], Awaitable[None]]
    ) -> Subscription:
        """``callback(stream_id, session_id, by)`` for every adopted notice."""

        async def handle(msg: Msg) -> None:
            try:
                body = msgspec.json.decode(msg.data, type=dict[str, str])
                stream_id = msg.subject.removeprefix(ADOPTED_SUBJECT + ".")
                await callback(stream_id, body["session_id"], body["by"])
            except Exception:
                log.exception("adopted notice not handled")

        return await self._connection().subscribe(f"{ADOPTED_SUBJECT}.*", cb=handle)
