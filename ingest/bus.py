"""Ingest's broker: what it consumes and publishes on NATS.

``create_broker(settings)`` serves twice: ``python -m ingest`` starts it, and
``events.asyncapi`` builds it unconnected to document ingest's events. Handlers reach
the running process's parts through FastStream's context: ``__main__`` sets
``broker.context["ingest"]`` to an :class:`IngestRuntime` before the broker starts.

Consumed:

- ``channel.key_rotated`` — durable consumer ``ingest-keys`` (JetStream, shared by all
  ingest replicas: one of them stores each rotation in ``ingest_channel_keys``, which
  every replica reads at publish time). Ack policy: ``events.consumer``'s (ack on
  return; a database error naks with backoff; a malformed event — unknown hash
  algorithm, not a hex digest — is a ``PermanentError``, dead-lettered at once).
  Idempotent without a tracking row: the upsert only replaces an older rotation.
- ``stream.stop_requested`` — a *core* NATS subscription, no queue group: every ingest
  process receives it, because any one of them may hold the publisher. No ack (core
  NATS); a process that was down missed nothing, its publishers died with it.
  ``no_reply=True``: the message is a JetStream publish whose reply subject is the
  publisher's PubAck inbox, and FastStream would otherwise answer it.

Between ingest processes only (core NATS, no JetStream stream, not catalog events):
``ingest.takeover.{stream_id}`` request/reply (:mod:`ingest.takeover`: drop a
half-open publisher for a publish on another process), ``ingest.adopted.{stream_id}``
and the KV bucket ``ingest_broadcasts`` (:mod:`ingest.packager.handoff`: a lingering
broadcast continued by whichever process the publisher reconnects to).

Published (through ``events.publisher.EventPublisher``): ``stats.ingest``; the packager
(ingest/packager) publishes the ``stream.*`` lifecycle and media events,
``stream.thumbnail``, and a recording's first ``video.published``, listed here for the
AsyncAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Final

from faststream import Context
from faststream.nats import NatsBroker

from common.logs import get_logger
from common.settings import Settings
from events.broker import create_broker as create_component_broker
from events.catalog import (
    ChannelKeyRotated,
    StatsIngest,
    StreamEnded,
    StreamPart,
    StreamRecorded,
    StreamSegment,
    StreamStarted,
    StreamStopRequested,
    StreamThumbnail,
    VideoPublished,
)
from events.consumer import RetryPolicy, durable_subscriber
from events.declare import declare_publishes
from events.envelope import Event
from ingest.keys import KeyStore
from ingest.server import IngestServer

__all__ = ["COMPONENT", "CONTEXT_KEY", "KEYS_DURABLE", "IngestRuntime", "create_broker"]

log = get_logger(__name__)

COMPONENT: Final = "ingest"
CONTEXT_KEY: Final = "ingest"
KEYS_DURABLE: Final = "ingest-keys"
# A key that is not stored yet refuses its publisher: retry soon, not in minutes.
KEYS_POLICY: Final = RetryPolicy(max_deliver=10, backoff_s=(0.5, 1.0, 5.0, 15.0), ack_wait_s=30.0)
# The packager's events (ingest/packager) go out on the same connection.
PUBLISHES: Final[tuple[type[Event], ...]] = (
    StatsIngest,
    StreamStarted,
    StreamPart,
    StreamSegment,
    StreamThumbnail,
    StreamEnded,
    StreamRecorded,
    VideoPublished,  # a recording is a video at once (ingest/packager/live.py)
)


@dataclass
class IngestRuntime:
    keys: KeyStore
    server: IngestServer | None = None
    # Called after a rotation is handled (stored or not): tests wait on it.
    key_listeners: list[Callable[[ChannelKeyRotated], None]] = field(default_factory=list)


async def on_key_rotated(
    event: ChannelKeyRotated,
    runtime: Annotated[IngestRuntime, Context(CONTEXT_KEY)],
) -> None:
    stored = await runtime.keys.apply_rotation(event)
    log.info(
        "channel key stored" if stored else "older channel key ignored",
        stream_id=event.stream_id,
        event_id=event.event_id,
    )
    for listener in runtime.key_listeners:
        listener(event)


async def on_stop_requested(
    event: StreamStopRequested,
    runtime: Annotated[IngestRuntime, Context(CONTEXT_KEY)],
) -> None:
    if runtime.server is None:
        return
    here = await runtime.server.stop_stream(event.stream_id, event.reason)
    log.info("stop requested", stream_id=event.stream_id, reason=event.reason, publisher_here=here)


def create_broker(settings: Settings) -> NatsBroker:
    broker = create_component_broker(settings, name=COMPONENT)
    durable_subscriber(
        broker,
        ChannelKeyRotated,
        durable=KEYS_DURABLE,
        policy=KEYS_POLICY,
        description="Store the channel's stream-key hash (newest rotation wins).",
    )(on_key_rotated)
    broker.subscriber(
        StreamStopRequested.subject_filter(),
        no_reply=True,
        title=f"{COMPONENT}:stop:{StreamStopRequested.event_type()}",
        description="Every ingest process: disconnect the channel's publisher if it is here.",
    )(on_stop_requested)
    declare_publishes(broker, *PUBLISHES, component=COMPONENT)
    return broker
