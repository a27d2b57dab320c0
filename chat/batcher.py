"""Group commit for chat decisions: what arrives while a batch commits goes in the next.

The consumer runs several handlers at once (``max_workers``); each hands its message
here and waits. One task decides everything queued in one transaction
(:meth:`~chat.pipeline.ChatPipeline.decide_batch`), in arrival order. A busy channel
then costs one commit per batch rather than per message, and a quiet one still gets
its message decided at once (a batch of one). If a batch fails, its messages are
decided one by one, so one bad message only fails itself (and is redelivered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

from chat.pipeline import ChatPipeline
from chat.stages import STAGES
from common.logs import get_logger
from common.tasks import cancel_and_wait
from events.catalog import ChatMessage
from events.envelope import Event

log = get_logger(__name__)

MAX_BATCH: Final = 64


class DecisionBatcher:
    def __init__(self, pipeline: ChatPipeline, max_batch: int = MAX_BATCH) -> None:
        self.pipeline = pipeline
        self.max_batch = max_batch
        self._queue: list[tuple[ChatMessage, asyncio.Future[list[Event]]]] = []
        self._queued_at: dict[str, float] = {}  # event id → monotonic (STAGES only)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # for metrics and tests

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-decisions")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("chat decisions stopped"))
        self._queue.clear()

    async def decide(self, message: ChatMessage) -> list[Event]:
        if self._task is None:  # not started (a tool, a test): decide inline
            return await self.pipeline.decide(message)
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        if STAGES.enabled:
            STAGES.add("transit", time.time() * 1000 - message.occurred_at.timestamp() * 1000)
            self._queued_at[message.event_id] = time.monotonic()
        self._queue.append((message, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._decide(batch)

    async def _decide(self, batch: list[tuple[ChatMessage, asyncio.Future[list[Event]]]]) -> None:
        self.batches += 1
        started = time.monotonic()
        if STAGES.enabled:
            STAGES.add("size", len(batch))
            for message, _ in batch:
                queued_at = self._queued_at.pop(message.event_id, started)
                STAGES.add("queued", (started - queued_at) * 1000)
        try:
            outcomes = await self.pipeline.decide_batch([m for m, _ in batch])
            STAGES.add("batch", (time.monotonic() - started) * 1000)
        except Exception:
            if len(batch) > 1:
                log.warning("chat batch failed, deciding one by one", size=len(batch))
            for message, future in batch:
                try:
                    result = await self.pipeline.decide(message)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
            return
        for (_, future), events in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(events)
