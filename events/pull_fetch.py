"""Two fixes to nats-py's pull ``fetch``, installed once per process (events/broker.py).

Both versions are pinned (nats-py 2.16.0, FastStream 0.7.8); each fix is harmless once
its project changes its side.

**A timeout leaves as nats-py's own error.** ``PullSubscription.fetch`` (js/client.py,
``_fetch_n``) raises a bare ``asyncio.TimeoutError`` when its deadline has passed
between the no-wait probe and the lingering request. FastStream's pull loops suppress
only ``nats.errors.TimeoutError`` (a subclass, not the other way round), so the bare
one escapes: the consume task dies and is restarted, and a batch subscriber drops the
messages it had gathered in that window until AckWait hands them out again.

**A fetch returns once it has messages.** After a first message, ``fetch(n)`` with
n > 1 waits for the rest until the server ends the pull request (a 404 or 408) or its
own timeout passes. A pull request the server still holds from an earlier fetch (its
408 raced the client's timer, nats.py issue #933) takes the next message and is not
ended by it, so an idle consumer got some messages only at the end of its timeout:
up to a second late with our pull subscribers. :func:`promptly` asks for one message
first, which comes back as soon as it arrives, then for as many as that message says
are still pending, with a short timeout: a backlog still comes in batches, an idle
consumer no longer waits.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

__all__ = ["install", "promptly", "translate_timeouts"]

_MARK: Final = "_videopick_pull_fetch"
# The most the rest of a batch may add to its first message: only when other fetchers
# took the pending messages first does the follow-up wait this long for nothing.
FOLLOW_UP_TIMEOUT_S: Final = 0.05

Fetch = Callable[..., Awaitable[list[Msg]]]


def translate_timeouts(fetch: Fetch) -> Fetch:
    """``fetch`` with a bare ``asyncio.TimeoutError`` re-raised as nats-py's own."""

    @functools.wraps(fetch)
    async def fetch_with_nats_timeouts(*args: Any, **kwargs: Any) -> list[Msg]:
        try:
            return await fetch(*args, **kwargs)
        except nats.errors.TimeoutError:
            raise
        except TimeoutError as exc:  # asyncio.TimeoutError is this builtin
            raise nats.errors.TimeoutError from exc

    return fetch_with_nats_timeouts


def promptly(fetch: Fetch) -> Fetch:
    """``fetch(batch, timeout)`` that returns as soon as it has a message: the first,
    then the ones pending behind it (at most ``batch`` in all)."""

    @functools.wraps(fetch)
    async def fetch_promptly(
        subscription: JetStreamContext.PullSubscription,
        batch: int = 1,
        timeout: float | None = 5,  # noqa: ASYNC109 - nats-py's own signature
        heartbeat: float | None = None,
    ) -> list[Msg]:
        first = await fetch(subscription, 1, timeout, heartbeat)
        pending = min(batch - 1, first[-1].metadata.num_pending) if first else 0
        if pending <= 0:
            return first
        follow_up_s = FOLLOW_UP_TIMEOUT_S if timeout is None else min(timeout, FOLLOW_UP_TIMEOUT_S)
        try:
            rest = await fetch(subscription, pending, follow_up_s, heartbeat)
        except TimeoutError:  # nats-py's TimeoutError too: another fetcher took them
            return first
        return first + rest

    return fetch_promptly


def install() -> None:
    """Wrap ``PullSubscription.fetch`` (idempotent)."""
    pull = JetStreamContext.PullSubscription
    if not getattr(pull.fetch, _MARK, False):
        wrapped = translate_timeouts(promptly(pull.fetch))
        setattr(wrapped, _MARK, True)
        pull.fetch = wrapped  # type: ignore[method-assign,assignment]
