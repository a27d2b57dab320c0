"""The catalog projection: live channels and videos, folded from the event log.

Who applies what, with several gateway processes and no shared memory
--------------------------------------------------------------------
Every gateway process runs a :class:`CatalogProjector`: one reader per stream
(``ACCOUNTS``, ``STREAMS``, ``UPLOADS``, ``MEDIA``), each an ephemeral consumer starting
after the checkpoint stored in the database. So every process *reads* every event, and
the database decides who *applies* it: a batch is applied in one transaction that
locks the projection's checkpoint rows, skips the events at or below the stream's
checkpoint, writes the rows and moves the checkpoint to the batch's last sequence.
The first process to commit a batch applies it; the others find the checkpoint past
it and skip — exactly once, in log order, whatever crashes where (rows and position
commit together).

Rejected alternatives: one shared durable consumer spreads a stream's messages over
the processes, and ordering then rests on ``max_ack_pending=1`` plus redelivery
timing, with the database still needed to make redeliveries no-ops; a lease table adds
expiry and fencing for no gain over the row lock we take anyway. The price here: N
processes read the (small) catalog streams N times, and losers wait on the lock.

A batch also carries the position its reader had before it (``prev_last``). Each
process's reader only moves forward, and each of its batches was applied or found
already applied, so the checkpoint is never below ``prev_last`` — unless an operator
reset it (:func:`rebuild`). Then the reader rewinds to the checkpoint instead of
applying a batch that would leave a hole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logs import get_logger
from events.envelope import Event
from events.streams import stream_for_subject
from gateway.projections._checkpoints import (
    lock_checkpoints,
    read_checkpoints,
    reset_checkpoints,
    set_checkpoint,
)
from gateway.projections._reader import LogReader, reraise_if_cancelled
from gateway.projections._store import clear_tables, load_state, store_state
from gateway.projections.reducer import CATALOG_EVENTS, apply_event, keys_of

__all__ = [
    "FEEDS",
    "PROJECTION",
    "BatchOutcome",
    "CatalogProjector",
    "Feed",
    "RebuildReport",
    "apply_batch",
    "decode_batch",
    "rebuild",
]

log = get_logger(__name__)

PROJECTION: Final = "gateway_catalog"


@dataclass(frozen=True)
class Feed:
    """One stream the projection reads, and the subject prefixes of the events it
    folds; the rest is skipped."""

    stream: str
    prefixes: tuple[str, ...]

    @property
    def subject(self) -> str | None:
        """The reader's filter: the one prefix folded, else none (``_reader.py``, "One
        filter at most"). UPLOADS is mostly ``chunk.uploaded``, one per durable tus
        chunk, dozens a second during an upload: read unfiltered, each cost a
        transaction that only moved the checkpoint, on the uploading gateway's loop."""
        return self.prefixes[0] + ">" if len(self.prefixes) == 1 else None


def _feeds() -> tuple[Feed, ...]:
    by_stream: dict[str, list[str]] = {}
    for event_type in CATALOG_EVENTS:
        prefix = event_type.event_type() + "."
        stream = stream_for_subject(prefix + "x").name
        by_stream.setdefault(stream, []).append(prefix)
    return tuple(Feed(stream, tuple(prefixes)) for stream, prefixes in by_stream.items())


FEEDS: Final = _feeds()
STREAM_NAMES: Final = tuple(feed.stream for feed in FEEDS)


def _decoder() -> msgspec.json.Decoder[Any]:
    union: Any = CATALOG_EVENTS[0]
    for event_type in CATALOG_EVENTS[1:]:
        union = union | event_type
    return msgspec.json.Decoder(union)


_DECODER: Final = _decoder()


def decode_batch(
    msgs: Sequence[Msg], prefixes: tuple[str, ...] | None = None
) -> list[tuple[int, Event | None]]:
    """(stream sequence, event); None for a subject outside ``prefixes`` (not decoded)
    and for a payload we cannot read (logged). Both still move the checkpoint.

    A poison event must not stop the catalog for good: it is skipped deterministically
    (a rebuild skips it too); the log keeps it for ``videopick events`` to inspect.
    """
    out: list[tuple[int, Event | None]] = []
    for msg in msgs:
        seq = msg.metadata.sequence.stream
        if prefixes is not None and not msg.subject.startswith(prefixes):
            out.append((seq, None))
            continue
        try:
            event: Event | None = _DECODER.decode(msg.data)
        except msgspec.MsgspecError as exc:
            log.error(
                "catalog: undecodable event skipped", subject=msg.subject, seq=seq, error=str(exc)
            )
            event = None
        out.append((seq, event))
    return out


@dataclass(frozen=True)
class BatchOutcome:
    applied: int = 0  # events folded in by this call
    skipped: int = 0  # at or below the checkpoint (another process had them), or unreadable
    rewind_to: int | None = None  # the checkpoint went backwards: continue after this


# The database serializes the projection's writers anyway (the checkpoint lock). Within
# one process they also take turns here first: a SQLite writer that finds the database
# locked sleeps in its busy handler (up to 100 ms a try) instead of being woken when
# the lock frees, which left a rebuild's four concurrent streams mostly idle.
_WRITER_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _writer_turn() -> asyncio.Lock:
    return _WRITER_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def apply_batch(
    sessions: async_sessionmaker[AsyncSession],
    stream: str,
    prev_last: int,
    batch: Sequence[tuple[int, Event | None]],
) -> BatchOutcome:
    """Apply ``batch`` (consecutive for its reader, after ``prev_last``) exactly once."""
    if not batch:
        return BatchOutcome()
    last = batch[-1][0]
    # Cheap look without the lock: when another process is ahead, skip without waiting.
    async with sessions() as session:
        seen = (await read_checkpoints(session, PROJECTION, [stream]))[stream]
    if seen >= last:
        return BatchOutcome(skipped=len(batch))
    if seen < prev_last:
        return BatchOutcome(rewind_to=seen)
    async with _writer_turn(), sessions.begin() as session:
        checkpoint = (await lock_checkpoints(session, PROJECTION, STREAM_NAMES))[stream]
        if checkpoint < prev_last:
            return BatchOutcome(rewind_to=checkpoint)
        if checkpoint >= last:
            return BatchOutcome(skipped=len(batch))
        todo = [event for seq, event in batch if seq > checkpoint and event is not None]
        state = await load_state(session, keys_of(todo))
        applied = sum(apply_event(state, event) for event in todo)
        await store_state(session, state)
        await set_checkpoint(session, PROJECTION, stream, max(last, checkpoint))
    return BatchOutcome(applied=applied, skipped=len(batch) - applied)


T = TypeVar("T")


async def _finish_before_cancel(work: Coroutine[Any, Any, T]) -> T:
    """Run database work to its end even when the caller is cancelled meanwhile.

    A query cancelled in flight breaks the SQLite driver: SQLAlchemy invalidates the
    connection, aiosqlite's worker thread stops, and the graceful close SQLAlchemy
    schedules then waits forever (aiosqlite 0.22 ``close()`` awaits a second stop),
    which hangs the event loop's shutdown. So a batch's transaction always completes
    (commit or rollback), and the cancellation is delivered right after it.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # Bounded by the database's own timeouts (SQLite busy_timeout, asyncpg's).
        with contextlib.suppress(Exception):
            await task
        raise


async def _checkpoint(sessions: async_sessionmaker[AsyncSession], stream: str) -> int:
    async with sessions() as session:
        return (await read_checkpoints(session, PROJECTION, [stream]))[stream]


class CatalogProjector:
    """Keeps the catalog tables up to date in the background (one task per stream)."""

    def __init__(
        self,
        js: JetStreamContext,
        sessions: async_sessionmaker[AsyncSession],
        *,
        batch_size: int = 256,
        idle_timeout_s: float = 5.0,
        name: str = "gateway-catalog",
    ) -> None:
        self._js = js
        self._sessions = sessions
        self._batch_size = batch_size
        self._idle_timeout_s = idle_timeout_s
        self._name = name
        self._tasks: list[asyncio.Task[None]] = []
        # Checked by the loops as well as cancelling them: nats-py swallows a
        # cancellation that lands inside some of its calls (`_flush_pending`
        # catches CancelledError), and a loop must still end within one idle timeout.
        self._stopping = False
        # Per stream: the last sequence this process applied or saw applied.
        self.positions: dict[str, int] = {}
        # Events this process folded in, and events it found another had applied.
        self.applied = 0
        self.skipped = 0

    async def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        for feed in FEEDS:
            self._tasks.append(
                asyncio.create_task(self._run(feed), name=f"{self._name}:{feed.stream}")
            )

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, feed: Feed) -> None:
        backoff = 0.5
        reader: LogReader | None = None
        prev = 0
        try:
            while not self._stopping:
                try:
                    if reader is None:
                        prev = await _finish_before_cancel(_checkpoint(self._sessions, feed.stream))
                        self.positions[feed.stream] = prev
                        reader = LogReader(
                            self._js,
                            feed.stream,
                            feed.subject,
                            start_seq=prev + 1,
                            batch_size=self._batch_size,
                            idle_timeout_s=self._idle_timeout_s,
                        )
                    msgs = await reader.next_batch()
                    if not msgs:
                        continue
                    outcome = await _finish_before_cancel(
                        apply_batch(
                            self._sessions, feed.stream, prev, decode_batch(msgs, feed.prefixes)
                        )
                    )
                    self.applied += outcome.applied
                    self.skipped += outcome.skipped
                    if outcome.rewind_to is not None:
                        log.info(
                            "catalog: checkpoint reset, rewinding",
                            stream=feed.stream,
                            to=outcome.rewind_to,
                        )
                        prev = outcome.rewind_to
                        await reader.rewind(prev)
                    else:
                        prev = reader.last_seq
                    self.positions[feed.stream] = prev
                    backoff = 0.5
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    # Database or NATS trouble: the batch was not committed, so start
                    # again from the stored checkpoint after a pause.
                    log.warning(
                        "catalog: feed failed, retrying",
                        stream=feed.stream,
                        error=repr(exc),
                        retry_in_s=backoff,
                    )
                    if reader is not None:
                        await reader.close()
                    reader = None
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            if reader is not None:
                await asyncio.shield(reader.close())


@dataclass(frozen=True)
class RebuildReport:
    events: int
    applied: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def _replay(
    js: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    feed: Feed,
    batch_size: int,
) -> tuple[int, int]:
    """Replay one stream from its start up to its last sequence as of now."""
    info = await js.stream_info(feed.stream)
    stop_at = info.state.last_seq
    reader = LogReader(
        js,
        feed.stream,
        feed.subject,
        batch_size=batch_size,
        idle_timeout_s=1.0,
    )
    prev = read = applied = 0
    try:
        await reader.open()
        while not reader.caught_up and reader.last_seq < stop_at:
            msgs = await reader.next_batch()
            if not msgs:
                continue
            read += len(msgs)
            outcome = await _finish_before_cancel(
                apply_batch(sessions, feed.stream, prev, decode_batch(msgs, feed.prefixes))
            )
            applied += outcome.applied
            if outcome.rewind_to is not None:  # someone reset again meanwhile
                prev = outcome.rewind_to
                await reader.rewind(prev)
            else:
                prev = reader.last_seq
    finally:
        await reader.close()
    return read, applied


async def rebuild(
    js: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    *,
    batch_size: int = 4096,
) -> RebuildReport:
    """Empty the catalog and its checkpoints, then replay every stream from the start.

    Safe while gateways run: their projectors see the checkpoint go back, rewind and
    help replay; the checkpoint lock still lets one writer apply each event.
    """
    started = time.perf_counter()
    async with sessions.begin() as session:
        await lock_checkpoints(session, PROJECTION, STREAM_NAMES)
        await clear_tables(session)
        await reset_checkpoints(session, PROJECTION, STREAM_NAMES)
    results = await asyncio.gather(*(_replay(js, sessions, feed, batch_size) for feed in FEEDS))
    report = RebuildReport(
        events=sum(r for r, _ in results),
        applied=sum(a for _, a in results),
        seconds=time.perf_counter() - started,
    )
    log.info(
        "catalog rebuilt",
        events=report.events,
        applied=report.applied,
        seconds=round(report.seconds, 3),
    )
    return report
