"""The broker factory: one FastStream NATS broker per process, msgspec-typed."""

from __future__ import annotations

import logging

from fast_depends.msgspec import MsgSpecSerializer
from faststream.nats import NatsBroker

from common.settings import Settings
from events import pull_fetch
from events.consumer import AckPolicyMiddleware


def create_broker(settings: Settings, *, name: str) -> NatsBroker:
    """A broker whose subscribers all go through the explicit ack policy.

    ``name`` shows up in the NATS server's connection list (``videopick-gateway``).
    FastStream logs two INFO lines per message by default; DEBUG keeps them out of
    the way unless an operator asks for them.
    """
    pull_fetch.install()  # before any pull subscriber starts fetching
    return NatsBroker(
        settings.nats_servers,
        name=f"videopick-{name}",
        serializer=MsgSpecSerializer(),
        middlewares=[AckPolicyMiddleware],
        log_level=logging.DEBUG,
        # Reconnect forever: a restarting NATS must not kill the component.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
