"""Emoji effects: counted per channel per second, then one ``chat.effect`` per window.

Counting happens in the decision transaction (the channel row is locked, so the
read-modify-write of a window's counts is safe across chat workers). A window is
flushed once it has closed (plus ``GRACE_MS`` for decisions still committing): every
worker's flusher may find it, so the event's id is derived from (channel, window) and
JetStream's duplicate window keeps one; gateways also drop a window they have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, cast

import msgspec
from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from chat.models import EffectWindowRow
from chat.sql import upsert
from common.logs import get_logger
from common.tasks import cancel_and_wait
from events.catalog import ChatEffect

log = get_logger(__name__)

WINDOW_MS: Final = 1000
GRACE_MS: Final = 500
FLUSH_EVERY_S: Final = 0.2
# With no effect counted here lately, look less often: windows another worker counted
# are its own to flush (this is the backstop if it died), and an idle platform should
# not query its database five times a second per worker.
IDLE_FLUSH_EVERY_S: Final = 2.0
# After an effect is counted, look often until its window is due (window + grace).
BUSY_FOR_S: Final = (WINDOW_MS + GRACE_MS) / 1000 + 1.0
KEEP_MS: Final = 3600 * 1000
Counts = Mapping[str, int]  # emoji → how many
_NAMESPACE: Final = uuid.UUID("8b6c1f0e-6f4a-4c52-9d1e-2f61a1c0e7a5")


def window_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % WINDOW_MS


def effect_event_id(stream_id: str, window_start_ms: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"chat.effect:{stream_id}:{window_start_ms}"))


async def add_counts(conn: AsyncConnection, pending: Mapping[tuple[str, int], Counts]) -> None:
    """Add a decision batch's effect emoji, ``{(stream_id, window start): counts}``, to
    their windows (the caller holds the channels' locks): one read, one upsert.

    A window already published takes no more: its counts go to the next second.
    """
    table = cast(Table, EffectWindowRow.__table__)
    merged: dict[tuple[str, int], dict[str, int]] = {}
    todo = {key: dict(counts) for key, counts in pending.items()}
    for _ in range(3):  # a window can only be published once: the next one is not
        if not todo:
            break
        found = {
            (row.stream_id, row.window_start_ms): row
            for row in await conn.execute(
                select(table.c.stream_id, table.c.window_start_ms, table.c.counts)
                .add_columns(table.c.published)
                .where(table.c.stream_id.in_({sid for sid, _ in todo}))
                .where(table.c.window_start_ms.in_({window for _, window in todo}))
            )
        }
        later: dict[tuple[str, int], dict[str, int]] = {}
        for key, counts in todo.items():
            row = found.get(key)
            if row is not None and row.published:
                _add(later.setdefault((key[0], key[1] + WINDOW_MS), {}), counts)
                continue
            if key not in merged:
                merged[key] = _decode(row.counts) if row is not None else {}
            _add(merged[key], counts)
        todo = later
    if merged:
        await upsert(
            conn,
            table,
            [
                {
                    "stream_id": sid,
                    "window_start_ms": window,
                    "counts": msgspec.json.encode(counts).decode(),
                    "published": False,
                }
                for (sid, window), counts in merged.items()
            ],
            keys=["stream_id", "window_start_ms"],
            columns=["counts"],
        )


def _decode(counts: str) -> dict[str, int]:
    return msgspec.json.decode(counts, type=dict[str, int])


def _add(into: dict[str, int], counts: Counts) -> None:
    for emoji, count in counts.items():
        into[emoji] = into.get(emoji, 0) + count


async def due_windows(sessions: async_sessionmaker[AsyncSession], now_ms: int) -> list[ChatEffect]:
    async with sessions() as session:
        rows = (
            await session.scalars(
                select(EffectWindowRow)
                .where(
                    EffectWindowRow.published.is_(False),
                    EffectWindowRow.window_start_ms <= now_ms - WINDOW_MS - GRACE_MS,
                )
                .order_by(EffectWindowRow.window_start_ms)
                .limit(500)
            )
        ).all()
    return [
        ChatEffect(
            event_id=effect_event_id(row.stream_id, row.window_start_ms),
            stream_id=row.stream_id,
            window_start_ms=row.window_start_ms,
            counts=msgspec.json.decode(row.counts, type=dict[str, int]),
            producer="chat",
        )
        for row in rows
    ]


async def mark_published(
    sessions: async_sessionmaker[AsyncSession], effect: ChatEffect, now_ms: int
) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(EffectWindowRow)
            .where(
                EffectWindowRow.stream_id == effect.stream_id,
                EffectWindowRow.window_start_ms == effect.window_start_ms,
            )
            .values(published=True)
        )
        await session.execute(
            delete(EffectWindowRow).where(
                EffectWindowRow.published.is_(True),
                EffectWindowRow.window_start_ms < now_ms - KEEP_MS,
            )
        )


class EffectFlusher:
    """Publishes closed windows every ``FLUSH_EVERY_S``; start/stop explicitly."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publish: Callable[[ChatEffect], Awaitable[None]],
        clock_ms: Callable[[], int],
    ) -> None:
        self._sessions = sessions
        self._publish = publish
        self._clock_ms = clock_ms
        self._task: asyncio.Task[None] | None = None
        self._busy_until = 0.0
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def counted(self) -> None:
        """An effect was just counted here: flush often until its window is out."""
        self._busy_until = time.monotonic() + BUSY_FOR_S
        self._wake.set()

    async def flush_once(self) -> int:
        now = self._clock_ms()
        effects = await due_windows(self._sessions, now)
        for effect in effects:
            # Publish first, then mark: a crash in between publishes it again with the
            # same id, which JetStream drops (never lost, never doubled).
            await self._publish(effect)
            await mark_published(self._sessions, effect, now)
        return len(effects)

    async def _run(self) -> None:
        while True:
            try:
                await self.flush_once()
            except Exception:
                # SQLAlchemy turns a cancellation inside a database call into an error
                # of its own (the connection is invalidated): stop() must still stop us.
                if _cancelling():
                    raise asyncio.CancelledError from None
                log.exception("effect flush failed")
            busy = time.monotonic() < self._busy_until
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), FLUSH_EVERY_S if busy else IDLE_FLUSH_EVERY_S
                )
            if not busy:
                # Woken from idle by a count: that window closes in a second at the
                # earliest; from here on, the busy pace.
                await asyncio.sleep(FLUSH_EVERY_S)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
