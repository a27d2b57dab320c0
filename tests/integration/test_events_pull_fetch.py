"""A pull fetch returns as soon as it has messages (events/pull_fetch.py), on a real
nats-server: a pull request the server still holds from an earlier fetch used to keep
a batch fetch waiting for its whole timeout after the first message."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from nats.js.client import JetStreamContext

from events import pull_fetch

pytestmark = pytest.mark.integration

FETCH_TIMEOUT_S = 5.0


async def test_a_message_comes_at_once_though_an_old_pull_request_is_still_held(
    js: JetStreamContext, scratch_subject: str
) -> None:
    pull_fetch.install()
    subscription = await js.pull_subscribe(scratch_subject, durable="idle")
    # What a fetch whose 408 raced its timer leaves on the server: a lingering pull
    # request on the subscription's inbox, which the next message goes to (nats-py has
    # no public way to leave one).
    orphan = {"batch": 10, "expires": int(2 * FETCH_TIMEOUT_S * 1e9)}
    await js._nc.publish(
        subscription._nms,
        json.dumps(orphan).encode(),
        reply=subscription._deliver,
    )
    started = time.monotonic()
    fetching = asyncio.create_task(subscription.fetch(64, timeout=FETCH_TIMEOUT_S))
    await asyncio.sleep(0.1)
    await js.publish(scratch_subject, b"one")
    messages = await fetching
    waited = time.monotonic() - started
    assert [message.data for message in messages] == [b"one"]
    # Unfixed, the fetch waited out its timeout (or the old request's) for more.
    assert waited < FETCH_TIMEOUT_S / 2, waited


async def test_a_backlog_still_comes_in_batches_in_order(
    js: JetStreamContext, scratch_subject: str
) -> None:
    pull_fetch.install()
    for number in range(100):
        await js.publish(scratch_subject, str(number).encode())
    subscription = await js.pull_subscribe(scratch_subject, durable="backlog")
    first = await subscription.fetch(64, timeout=FETCH_TIMEOUT_S)
    second = await subscription.fetch(64, timeout=FETCH_TIMEOUT_S)
    assert [int(message.data) for message in first] == list(range(64))
    assert [int(message.data) for message in second] == list(range(64, 100))
