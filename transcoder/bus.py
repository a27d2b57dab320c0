"""The transcoder's broker: its durable consumers, and what it publishes (declared).

``create_broker(settings)`` is also what ``events.asyncapi`` calls to document the
transcoder; it builds everything but connects nothing.

Work sharing: every transcoder process registers ``transcode_workers`` pull
subscribers on ONE durable consumer, ``transcoder``; replicas use the same name, so
JetStream hands each job to exactly one of all those workers. Each worker fetches one
message at a time (``batch_size=1``) and only when it is idle: a message never waits
in a busy process's buffer while its ack wait runs out.

Ack policy (events/consumer.py, ``AckPolicy.MANUAL`` + ``AckPolicyMiddleware``): the
handler returning acks; ``PermanentError`` (poison input) dead-letters at once; any
other error naks with ``transcode_retry_backoff_s`` and dead-letters after
``transcode_max_deliver``. ``transcode_ack_wait_s`` is short (a killed worker's job comes
back quickly) because running jobs send ``in_progress`` every third of it.

``transcoder-deletions`` (``video.deleted``, :mod:`transcoder.deletion`): ack once the
media is gone and the event claimed; a store or database error naks with backoff (a
rerun deletes what is left); a long purge sends ``in_progress``.
"""

from __future__ import annotations

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from common.settings import Settings
from events.broker import create_broker as create_component_broker
from events.catalog import (
    StreamRecorded,
    TranscodeCompleted,
    TranscodeFailed,
    TranscodeProgress,
    TranscodeRequested,
    VideoDeleted,
    VideoPublished,
)
from events.consumer import RetryPolicy, durable_subscriber
from events.declare import declare_publishes
from events.envelope import Event
from events.publisher import EventPublisher
from transcoder import deletion
from transcoder.worker import (
    CONSUMER,
    RECORDINGS_CONSUMER,
    JobRequest,
    TranscodeWorker,
    retry_policy,
)

__all__ = ["COMPONENT", "PUBLISHES", "create_broker"]

COMPONENT = "transcoder"
PUBLISHES: tuple[type[Event], ...] = (
    TranscodeProgress,
    TranscodeCompleted,
    TranscodeFailed,
    VideoPublished,
)


# Deletions are cheap and idempotent: retry a store or database outage for ~15 hours.
DELETION_POLICY = RetryPolicy(
    max_deliver=20, backoff_s=(1.0, 5.0, 30.0, 120.0, 600.0, 3600.0), ack_wait_s=60.0
)


def _attempt(msg: NatsMessage) -> int:
    return int(msg.raw_message.metadata.num_delivered)


def create_broker(settings: Settings, *, worker: TranscodeWorker | None = None) -> NatsBroker:
    """The broker with ``transcode_workers`` job subscribers bound to ``worker``."""
    broker = create_component_broker(settings, name=COMPONENT)
    worker = worker or TranscodeWorker(settings)
    worker.bind(EventPublisher(broker, producer=COMPONENT))
    policy = retry_policy(settings)

    for index in range(max(1, settings.transcode_workers)):
        documented = index == 0  # the same channel again: document it once
        requested = durable_subscriber(
            broker,
            TranscodeRequested,
            durable=CONSUMER,
            policy=policy,
            batch_size=1,
            include_in_schema=documented,
        )

        @requested
        async def on_transcode_requested(event: TranscodeRequested, msg: NatsMessage) -> None:
            await worker.handle(JobRequest.from_requested(event), msg, attempt=_attempt(msg))

        if settings.transcode_recordings:
            # A finished live recording becomes a video through the same ladder.
            recorded = durable_subscriber(
                broker,
                StreamRecorded,
                durable=RECORDINGS_CONSUMER,
                policy=policy,
                batch_size=1,
                include_in_schema=documented,
            )

            @recorded
            async def on_stream_recorded(event: StreamRecorded, msg: NatsMessage) -> None:
                await worker.handle(JobRequest.from_recorded(event), msg, attempt=_attempt(msg))

    @durable_subscriber(
        broker, VideoDeleted, durable=deletion.CONSUMER, policy=DELETION_POLICY, batch_size=16
    )
    async def on_video_deleted(event: VideoDeleted, msg: NatsMessage) -> None:
        await deletion.remove_video(
            worker.sessions,
            worker.store,
            event,
            heartbeat=msg.in_progress,
            stop_job=worker.stop_job,
        )

    declare_publishes(broker, *PUBLISHES, component=COMPONENT)
    return broker
