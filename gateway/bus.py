"""The gateway's broker: what it consumes (subscribers) and publishes (declared).

``create_broker(settings)`` is used twice: by the app's lifespan (connected, started)
and by ``events.asyncapi`` (never connected) to document the gateway's events.

Extending: a gateway feature that consumes events adds one registrar to
``SUBSCRIBERS`` — a function ``(broker) -> None`` that calls
``events.consumer.durable_subscriber(broker, …)``. Handlers reach the app's services
through FastStream's context: the lifespan sets ``broker.context["gateway"]`` to the
:class:`gateway.services.Services` before the broker starts.
"""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker

from common.settings import Settings
from events.broker import create_broker as create_component_broker
from events.catalog import (
    ChannelKeyRotated,
    ChannelUpdated,
    ChatMessage,
    ChatTopup,
    StatsViewers,
    StreamStopRequested,
    UserRegistered,
    VideoDeleted,
)
from events.declare import declare_publishes
from events.envelope import Event
from gateway.tus.wiring import UPLOADS_PUBLISHES, upload_status_subscribers

COMPONENT = "gateway"
CONTEXT_KEY = "gateway"

# What the gateway publishes (through events.publisher.EventPublisher).
PUBLISHES: tuple[type[Event], ...] = (
    UserRegistered,
    ChannelKeyRotated,
    ChannelUpdated,
    StreamStopRequested,
    ChatMessage,
    ChatTopup,
    VideoDeleted,
    StatsViewers,
    *UPLOADS_PUBLISHES,
)

Registrar = Callable[[NatsBroker], None]
# One line per consuming feature, e.g. `catalog_subscribers` (gateway/projections).
SUBSCRIBERS: list[Registrar] = [upload_status_subscribers]


def create_broker(settings: Settings) -> NatsBroker:
    broker = create_component_broker(settings, name=COMPONENT)
    for register in SUBSCRIBERS:
        register(broker)
    declare_publishes(broker, *PUBLISHES, component=COMPONENT)
    return broker
