"""The per-socket queue: batches, a byte bound, memory returned on close."""

from __future__ import annotations

import asyncio

import pytest

from gateway.centrifuge.outbox import Outbox

pytestmark = pytest.mark.unit


async def test_batches_everything_queued_into_one_frame() -> None:
    box = Outbox(max_bytes=100)
    assert box.put('{"a":1}')
    assert box.put('{"b":2}')
    assert await box.take() == '{"a":1}\n{"b":2}'
    assert box.size == 0


async def test_over_the_limit_is_refused_and_flagged() -> None:
    box = Outbox(max_bytes=10)
    assert box.put("x" * 6)
    assert not box.put("y" * 6)
    assert box.overflowed
    box.close()
    assert box.size == 0
    assert not box.put("z")


async def test_take_waits_and_drained_follows_the_writer() -> None:
    box = Outbox(max_bytes=100)
    waiter = asyncio.create_task(box.take())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put("late")
    assert await asyncio.wait_for(waiter, 1) == "late"
    drained = asyncio.create_task(box.drained())
    await asyncio.sleep(0)
    assert not drained.done()  # the writer has not come back for more yet
    next_take = asyncio.create_task(box.take())
    await asyncio.wait_for(drained, 1)
    next_take.cancel()
