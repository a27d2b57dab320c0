"""The uploader's broker: what it consumes (subscribers) and publishes (declared).

``create_broker(settings)`` serves twice: ``python -m uploader`` connects and starts it,
``events.asyncapi`` only documents it. Handlers reach the process's
:class:`~uploader.services.Services` through the broker's context (``CONTEXT_KEY``),
which ``__main__`` sets before the broker starts.

Ack policy, per subscriber (events.consumer.AckPolicyMiddleware does the acking):

- ``uploader-created`` / ``uploader-cancelled``: ack after the commit; a failure naks
  with backoff (the writes are idempotent upserts, so a redelivery is harmless).
- ``uploader-progress``: every ``chunk.uploaded``, in batches gathered for
  ``PROGRESS_WINDOW_S``: the newest chunk of each upload moves its row's offset and
  expiry, one transaction per batch, then the batch is acked. A chunk that overtook
  its ``upload.created`` (UnknownUpload) naks the batch with backoff. One commit per
  chunk (and its WAL fsync) slowed the gateway's PATCHes by ~2 ms each on a shared
  disk (README, the tus benchmark with the uploader running).
- ``uploader-chunks``: the completing ``chunk.uploaded`` only (the others are acked
  untouched); ack after finalizing. UnknownUpload and a finalization another replica
  holds (ClaimBusy) nak with backoff and come back; a long finalization tells
  JetStream it is alive (``in_progress``) so AckWait does not hand the same
  completion to another replica meanwhile. A media rejection is not an error: it
  publishes ``upload.rejected`` and acks.
"""

from __future__ import annotations

from typing import Final

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from common.settings import Settings
from events.broker import create_broker as create_component_broker
from events.catalog import (
    ChunkUploaded,
    TranscodeRequested,
    UploadCompleted,
    UploadCreated,
    UploadExpired,
    UploadRejected,
)
from events.consumer import RetryPolicy, durable_subscriber
from events.declare import declare_publishes
from events.envelope import Event
from uploader.finalize import finalize
from uploader.lifecycle import record_cancel, record_chunk, record_created, record_progress
from uploader.services import Services

__all__ = ["COMPONENT", "CONTEXT_KEY", "PUBLISHES", "create_broker"]

COMPONENT: Final = "uploader"
CONTEXT_KEY: Final = "uploader"
PUBLISHES: Final[tuple[type[Event], ...]] = (
    UploadCompleted,
    UploadRejected,
    UploadExpired,
    TranscodeRequested,
)

# Quick retries cover a chunk that overtook its upload.created; the long tail covers
# a database or store outage. Finalizing heartbeats, so AckWait stays short.
EVENT_POLICY: Final = RetryPolicy(
    max_deliver=10, backoff_s=(1.0, 2.0, 5.0, 15.0, 60.0, 300.0), ack_wait_s=60.0
)
CHUNK_WORKERS: Final = 4
PROGRESS_WINDOW_S: Final = 0.25
PROGRESS_BATCH: Final = 256


def _services(broker: NatsBroker) -> Services:
    services = broker.context.get(CONTEXT_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("the uploader's services are not set (python -m uploader sets them)")
    return services


def register_subscribers(broker: NatsBroker) -> None:
    @durable_subscriber(broker, UploadCreated, durable="uploader-created", policy=EVENT_POLICY)
    async def on_created(event: UploadCreated) -> None:
        await record_created(_services(broker).sessions, event)

    @durable_subscriber(
        broker,
        ChunkUploaded,
        durable="uploader-chunks",
        policy=EVENT_POLICY,
        max_workers=CHUNK_WORKERS,
    )
    async def on_chunk(event: ChunkUploaded, msg: NatsMessage) -> None:
        if not event.complete:
            return  # progress: uploader-progress records it, in batches
        services = _services(broker)
        await record_chunk(services.sessions, event, float(services.settings.tus_expiry_s))
        size = event.offset + event.length
        await finalize(services, event, event.upload_id, size, heartbeat=msg.in_progress)

    @durable_subscriber(
        broker,
        ChunkUploaded,
        durable="uploader-progress",
        policy=EVENT_POLICY,
        batch_window_s=PROGRESS_WINDOW_S,
        batch_size=PROGRESS_BATCH,
    )
    async def on_progress(chunks: list[ChunkUploaded]) -> None:
        services = _services(broker)
        await record_progress(services.sessions, chunks, float(services.settings.tus_expiry_s))

    @durable_subscriber(broker, UploadRejected, durable="uploader-cancelled", policy=EVENT_POLICY)
    async def on_rejected(event: UploadRejected) -> None:
        await record_cancel(_services(broker).sessions, event)


def create_broker(settings: Settings) -> NatsBroker:
    broker = create_component_broker(settings, name=COMPONENT)
    register_subscribers(broker)
    declare_publishes(broker, *PUBLISHES, component=COMPONENT)
    return broker
