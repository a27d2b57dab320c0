"""A pull fetch's timeout always leaves as ``nats.errors.TimeoutError`` (events/pull_fetch).

The other fix, a fetch that returns promptly, needs a server:
tests/integration/test_events_pull_fetch.py.
"""

from __future__ import annotations

import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from common.settings import load_settings
from events import pull_fetch
from events.broker import create_broker


async def _bare_timeout(*_args: object, **_kwargs: object) -> list[Msg]:
    raise TimeoutError  # = asyncio.TimeoutError: nats-py 2.16 `_fetch_n` past its deadline


async def _nats_timeout(*_args: object, **_kwargs: object) -> list[Msg]:
    raise nats.errors.TimeoutError


async def _no_messages(*_args: object, **_kwargs: object) -> list[Msg]:
    return []


async def test_a_bare_timeout_becomes_the_nats_timeout_faststream_suppresses() -> None:
    with pytest.raises(nats.errors.TimeoutError) as raised:
        await pull_fetch.translate_timeouts(_bare_timeout)()
    assert type(raised.value.__cause__) is TimeoutError


async def test_other_outcomes_pass_through_unchanged() -> None:
    with pytest.raises(nats.errors.TimeoutError) as raised:
        await pull_fetch.translate_timeouts(_nats_timeout)()
    assert raised.value.__cause__ is None
    assert await pull_fetch.translate_timeouts(_no_messages)() == []


def test_every_broker_installs_it_once() -> None:
    create_broker(load_settings({}), name="test-fetch")
    wrapped = JetStreamContext.PullSubscription.fetch
    assert getattr(wrapped, "_videopick_pull_fetch", False)
    pull_fetch.install()
    assert JetStreamContext.PullSubscription.fetch is wrapped
