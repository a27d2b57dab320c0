"""Publishing events: always with ``Nats-Msg-Id`` = event_id, always awaiting the PubAck.

A retry after a timeout reuses the same id, so JetStream stores the event once
within the duplicate window (``PubAck.duplicate`` is then True).
"""

from __future__ import annotations

import asyncio

import msgspec
from faststream.nats import NatsBroker
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import PubAck

from common.logs import get_logger
from events.catalog import encode_event
from events.envelope import Event
from events.metrics import PUBLISHED
from events.streams import stream_for_subject

log = get_logger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


class PublishError(RuntimeError):
    """JetStream did not acknowledge the event after every retry."""


class EventPublisher:
    def __init__(
        self,
        broker: NatsBroker,
        *,
        producer: str,
        timeout_s: float = 2.0,
        attempts: int = 5,
    ) -> None:
        self._broker = broker
        self._producer = producer
        self._timeout_s = timeout_s
        self._attempts = attempts

    async def publish(self, event: Event, *, correlation_id: str = "") -> PubAck:
        if not event.producer or (correlation_id and not event.correlation_id):
            event = msgspec.structs.replace(
                event,
                producer=event.producer or self._producer,
                correlation_id=event.correlation_id or correlation_id,
            )
        subject = event.subject()
        stream = stream_for_subject(subject).name
        payload = encode_event(event)
        headers = {MSG_ID_HEADER: event.event_id, "content-type": "application/json"}
        delay = 0.1
        for attempt in range(1, self._attempts + 1):
            try:
                ack: PubAck = await self._broker.publish(
                    payload,
                    subject,
                    headers=headers,
                    stream=stream,
                    timeout=self._timeout_s,
                    correlation_id=event.correlation_id or event.event_id,
                )
            except (TimeoutError, NatsTimeoutError, NoRespondersError) as exc:
                if attempt == self._attempts:
                    raise PublishError(f"{event.event_type()} {event.event_id}: {exc!r}") from exc
                log.warning(
                    "publish retry", event_type=event.event_type(), attempt=attempt, error=repr(exc)
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                PUBLISHED.labels(self._producer, event.event_type()).inc()
                return ack
        raise AssertionError("unreachable")
