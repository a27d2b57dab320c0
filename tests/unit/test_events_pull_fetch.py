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


def _delivered(pending: int) -> Msg:
    """A message as JetStream delivers it: its ack subject says how many wait behind it."""
    reply = f"$JS.ACK.S.durable.1.5.5.1700000000000000000.{pending}"
    return Msg(_client=None, subject="s", reply=reply, data=b"")  # type: ignore[arg-type]


class _FakeFetch:
    """Answers each call with the next outcome, recording (batch, timeout)."""

    def __init__(self, *outcomes: list[Msg] | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[int, float | None]] = []

    async def __call__(
        self, _subscription: object, batch: int, wait_s: float | None, _heartbeat: object
    ) -> list[Msg]:
        self.calls.append((batch, wait_s))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def test_a_batch_fetch_asks_for_one_then_for_what_is_pending_behind_it() -> None:
    first, rest = _delivered(pending=2), [_delivered(1), _delivered(0)]
    fetch = _FakeFetch([first], rest)
    assert await pull_fetch.promptly(fetch)(object(), 64, 1.0) == [first, *rest]
    assert fetch.calls == [(1, 1.0), (2, pull_fetch.FOLLOW_UP_TIMEOUT_S)]


async def test_the_follow_up_never_asks_beyond_the_batch_or_the_timeout() -> None:
    fetch = _FakeFetch([_delivered(pending=500)], [])
    await pull_fetch.promptly(fetch)(object(), 64, 0.01)
    assert fetch.calls == [(1, 0.01), (63, 0.01)]


async def test_nothing_pending_or_a_batch_of_one_is_a_single_request() -> None:
    for batch, pending in ((64, 0), (1, 5)):
        fetch = _FakeFetch([_delivered(pending)])
        assert len(await pull_fetch.promptly(fetch)(object(), batch, 1.0)) == 1
        assert fetch.calls == [(1, 1.0)]


async def test_pending_messages_another_fetcher_took_leave_the_first_alone() -> None:
    first = _delivered(pending=3)
    for timeout in (TimeoutError(), nats.errors.TimeoutError()):
        fetch = _FakeFetch([first], timeout)
        assert await pull_fetch.promptly(fetch)(object(), 64, 1.0) == [first]
