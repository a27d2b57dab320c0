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
window is over.

A crash while the publisher is still connected loses nothing either: while a
broadcast is live its owner keeps the ``live`` record current — after every stored
segment and at least every ``HEARTBEAT_S`` — with the segments, the duration, where
a continuation resumes, and ``heartbeat`` (its wall clock). The writes run in a task
of their own, one at a time per broadcast (a segment stored meanwhile is in the next
one), so no part or playlist update ever waits for them. A ``live`` record whose
heartbeat is older than ``OWNER_GONE_S`` has lost its owner (:func:`owner_gone`):
everyone reads it as a broadcast that dropped at its last heartbeat
(:func:`as_dropped`, the window counting from then), so a reconnect anywhere within
the window continues it and the sweep ends it after the window. A continuation skips
the segment that was being cut at that heartbeat (its parts may be out; its segment
never will be): the playlists show a gap and an EXT-X-DISCONTINUITY there. The
heartbeat, not the publisher lease, tells a dead owner: it is in the very record the
claim compares-and-sets, so "the owner is gone" and "this process takes over" are
one step at one revision; the lease is in the database the packaging does not hold,
belongs to a connection rather than a broadcast, and lapses only after 15 s. Clocks
of ingest hosts are assumed NTP-close (the window's deadline already is wall-clock).
A segment stored in the few milliseconds between its write and the crash is in the
recording's MP4 (built from the store) but not in its VOD playlist.

Why KV and not a column of :class:`~ingest.keys.PublisherLeases`' table: the lease
says who may publish (it must hold while the database is the source of truth for
keys); this record is media state that ends with the broadcast, is read on every
reconnect by processes already on the bus, and needs a compare-and-set plus a
notice to the old owner — both of which NATS gives without a migration.

Size: the record holds one small tuple per segment (~30 bytes of JSON) since the
last sealed chunk only; every ``CHUNK_SEGMENTS`` segments are written once, before
the record naming them, to an immutable key ``{stream_id}.{session_id}.{n}`` (ids have
no dots, so the sweep tells records from chunks). A record update is then bounded at
about 20 KiB whatever the broadcast's length (NATS's default payload limit is 1 MiB),
and a 10-hour broadcast of 1 s segments is 60 chunks. The bucket's TTL (24 h) is per
write: a broadcast longer than that loses its oldest chunks from a hand-off (the
recording playlist then skips them; the MP4 is built from the store and keeps them).
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

__all__ = [
    "BUCKET",
    "CHUNK_SEGMENTS",
    "HEARTBEAT_S",
    "ORPHAN_GRACE_S",
    "OWNER_GONE_S",
    "BroadcastHandoff",
    "SegmentTuple",
    "Shared",
    "as_dropped",
    "owner_gone",
]

log = get_logger(__name__)

BUCKET: Final = "ingest_broadcasts"
ADOPTED_SUBJECT: Final = "ingest.adopted"  # + ".{stream_id}"; no JetStream stream takes it
# After the deadline, the owner's own timer has this long to end the broadcast before
# the other processes treat the owner as gone.
ORPHAN_GRACE_S: Final = 5.0
# A record outlives any broadcast's window by far; the bucket forgets leftovers.
BUCKET_TTL_S: Final = 24 * 3600.0
# A live record is rewritten at least this often (a silent publisher stores no segments).
HEARTBEAT_S: Final = 2.0
# ... and its owner is gone once the heartbeat is this old (three missed beats).
OWNER_GONE_S: Final = 3 * HEARTBEAT_S
# Segments per sealed chunk: keeps a record update ~20 KiB however long the broadcast.
CHUNK_SEGMENTS: Final = 600

State = Literal["live", "lingering", "ending"]
# (sequence, duration_s, discontinuity, byte_size) of a stored segment
SegmentTuple = tuple[int, float, bool, int]


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
    # The stored segments after the first ``chunks`` * CHUNK_SEGMENTS (sealed chunks).
    segments: list[SegmentTuple] = msgspec.field(default_factory=list)
    chunks: int = 0
    duration_s: float = 0.0
    created_at: float = 0.0  # unix time of the first publish
    # live: the owner's wall clock at its last write, and the reconnect window that
    # counts from it if the owner is gone (0: a record from before heartbeats).
    heartbeat: float = 0.0
    window_s: float = 0.0


def owner_gone(record: Shared, now: float) -> bool:
    """A live record whose owner stopped writing it: the process crashed."""
    return record.state == "live" and 0 < record.heartbeat < now - OWNER_GONE_S


def as_dropped(record: Shared) -> Shared:
    """A gone owner's live record as the lingering one it would have written when its
    publisher dropped at the last heartbeat (``resume`` already skips the segment
    that was being cut)."""
    return msgspec.structs.replace(
        record,
        state="lingering",
        deadline=record.heartbeat + record.window_s,
        reason="dropped",
    )


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Shared)
_chunk_decoder = msgspec.json.Decoder(list[SegmentTuple])


def chunk_key(stream_id: str, session_id: str, index: int) -> str:
    return f"{stream_id}.{session_id}.{index}"


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
        """Lingering records whose window closed more than ``grace_s`` ago (a gone
        owner's live record as :func:`as_dropped`, at the live record's revision)."""
        kv = await self._bucket()
        try:
            names = await kv.keys()
        except NoKeysError:
            return []
        now = time.time()
        found: list[tuple[str, Shared, int]] = []
        for name in names:
            if "." in name:  # a chunk of segments
                continue
            got = await self.read(name)
            if got is None:
                continue
            record, revision = got
            # Our own live record is never gone (its writes failed for a while: the bus).
            if record.owner != self.instance and owner_gone(record, now):
                record = as_dropped(record)
            if record.state == "lingering" and record.deadline + grace_s < now:
                found.append((name, record, revision))
        return found

    async def write_chunk(
        self, stream_id: str, session_id: str, index: int, segments: list[SegmentTuple]
    ) -> None:
        """Seal ``segments`` as chunk ``index`` (immutable: a rewrite stores the same)."""
        kv = await self._bucket()
        await kv.put(chunk_key(stream_id, session_id, index), _encoder.encode(segments))

    async def segments(self, stream_id: str, record: Shared) -> list[SegmentTuple]:
        """Every stored segment the record names: its sealed chunks, then its own."""
        kv = await self._bucket()
        found: list[SegmentTuple] = []
        for index in range(record.chunks):
            try:
                entry = await kv.get(chunk_key(stream_id, record.session_id, index))
                found += _chunk_decoder.decode(entry.value or b"[]")
            except (KeyNotFoundError, msgspec.DecodeError) as exc:  # TTL, or a bug
                log.warning("segments of a broadcast lost", chunk=index, error=repr(exc))
        return found + record.segments

    async def forget_chunks(self, stream_id: str, session_id: str, count: int) -> None:
        kv = await self._bucket()
        for index in range(count):
            try:
                await kv.purge(chunk_key(stream_id, session_id, index))
            except Exception as exc:  # TTL takes a leftover
                log.info("segment chunk not deleted", chunk=index, error=repr(exc))

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
