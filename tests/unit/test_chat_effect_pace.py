"""The effect flusher looks for due windows rarely when idle, often after a count."""

from __future__ import annotations

import asyncio
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat.effects import IDLE_FLUSH_EVERY_S, EffectFlusher
from events.catalog import ChatEffect


class CountingFlusher(EffectFlusher):
    def __init__(self) -> None:
        super().__init__(cast(async_sessionmaker[AsyncSession], None), self.publish, lambda: 0)
        self.looks = 0
        self.busy = asyncio.Event()

    async def publish(self, effect: ChatEffect) -> None:
        raise AssertionError("nothing to publish here")

    async def flush_once(self) -> int:
        self.looks += 1
        if self.looks >= 5:
            self.busy.set()
        return 0


async def test_idle_then_busy() -> None:
    flusher = CountingFlusher()
    flusher.start()
    try:
        await asyncio.sleep(IDLE_FLUSH_EVERY_S / 2)
        assert flusher.looks == 1  # once at start, then the idle pace
        flusher.counted()
        async with asyncio.timeout(5):  # the busy pace: ~5 a second
            await flusher.busy.wait()
    finally:
        await flusher.stop()
