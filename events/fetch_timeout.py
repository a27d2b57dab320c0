"""Make a pull fetch's timeout the error FastStream's pull loops expect.

nats-py 2.16.0 ``PullSubscription.fetch`` (js/client.py, ``_fetch_n``) raises a bare
``asyncio.TimeoutError`` when its deadline has passed between the no-wait probe and
the lingering request. FastStream 0.7.8's pull loops suppress only
``nats.errors.TimeoutError`` (a subclass, not the other way round), so the bare one
escapes: the consume task dies and is restarted, and a batch subscriber drops the
messages it had gathered in that window until AckWait hands them out again.

:func:`install` wraps ``fetch`` once per process so every timeout leaves it as
``nats.errors.TimeoutError``. Both versions are pinned; the wrapper is harmless once
either project fixes its side.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

_MARK = "_videopick_timeout_translated"

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

    setattr(fetch_with_nats_timeouts, _MARK, True)
    return fetch_with_nats_timeouts


def install() -> None:
    """Wrap ``PullSubscription.fetch`` (idempotent)."""
    pull = JetStreamContext.PullSubscription
    if not getattr(pull.fetch, _MARK, False):
        pull.fetch = translate_timeouts(pull.fetch)  # type: ignore[method-assign,assignment]
