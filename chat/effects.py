"""Emoji effects: counted per channel per second, then one ``chat.effect`` per window.

Counting happens in the decision transaction (the channel row is locked, so the
read-modify-write of a window's counts is safe across chat workers). A window is
flushed once it has closed (plus ``GRACE_MS`` for decisions still committing): every
worker's flusher may find it, so the event's id is derived from (channel, window) and
JetStream's duplicate window keeps one; gateways also drop a window they have seen.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.models import EffectWindowRow
from common.logs import get_logger
from common.tasks import cancel_and_wait
from events.catalog import ChatEffect

log = get_logger(__name__)

WINDOW_MS: Final = 1000
GRACE_MS: Final = 500
FLUSH_EVERY_S: Final = 0.2
KEEP_MS: Final = 3600 * 1000
_NAMESPACE: Final = uuid.UUID("8b6c1f0e-6f4a-4c52-9d1e-2f61a1c0e7a5")


def window_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % WINDOW_MS


def effect_event_id(stream_id: str, window_start_ms: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"chat.effect:{stream_id}:{window_start_ms}"))


async def add_counts(
    session: AsyncSession, stream_id: str, ts_ms: int, counts: Mapping[str, int]
) -> None:
    """Add one message's effect emoji to its channel's window (caller holds the lock)."""
    window = window_of(ts_ms)
    for _ in range(3):
        row = await session.get(EffectWindowRow, (stream_id, window))
        if row is None:
            session.add(
                EffectWindowRow(
                    stream_id=stream_id,
                    window_start_ms=window,
                    counts=msgspec.json.encode(dict(counts)).decode(),
                    published=False,
                )
            )
            return
        if row.published:
            window += WINDOW_MS  # a late decision: count it in the next second
            continue
        merged: dict[str, int] = msgspec.json.decode(row.counts, type=dict[str, int])
        for emoji, count in counts.items():
            merged[emoji] = merged.get(emoji, 0) + count
        row.counts = msgspec.json.encode(merged).decode()
        return


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

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

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
            await asyncio.sleep(FLUSH_EVERY_S)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
