"""The consumer base: durable pull subscribers with one explicit ack policy.

Every JetStream subscriber goes through :class:`AckPolicyMiddleware`:

- handler returned → ``ack`` (synchronously: a returned handler is a done message);
- ``PermanentError`` or an undecodable payload → copied to ``DEAD_LETTERS`` and
  terminated, never retried;
- any other exception → ``nak`` with a growing delay; on the last allowed delivery the
  message is copied to ``DEAD_LETTERS`` and terminated.

FastStream's own default (``REJECT_ON_ERROR``) would drop a message on its first
exception, and ``NACK_ON_ERROR`` redelivers in a tight loop (NOTES.md), so subscribers
use ``AckPolicy.MANUAL`` and this middleware decides.

Handlers are idempotent by :func:`run_once`: the processed-event row is written in the
same transaction as the side effect, so a redelivery after a crash between commit and
ack finds the row and skips the effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import msgspec
from fast_depends.exceptions import ValidationError as DependsValidationError
from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import claim_event
from common.logs import get_logger
from events.envelope import Event
from events.errors import PermanentError
from events.metrics import ACKED, CONSUMED, DEAD_LETTERED, HANDLER_SECONDS, RETRIED, event_type_of
from events.streams import stream_for_subject

log = get_logger(__name__)

DEAD_LETTER_PREFIX = "deadletter"
# Headers on a dead letter, so redrive knows where it came from.
H_SUBJECT = "VP-Original-Subject"
H_STREAM = "VP-Original-Stream"
H_SEQ = "VP-Original-Seq"
H_CONSUMER = "VP-Consumer"
H_ERROR = "VP-Error"
H_DELIVERIES = "VP-Deliveries"
H_MSG_ID = "VP-Original-Msg-Id"

POISON_ERRORS: tuple[type[BaseException], ...] = (
    PermanentError,
    msgspec.ValidationError,
    msgspec.DecodeError,
    DependsValidationError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a consumer retries one message."""

    max_deliver: int = 5
    backoff_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    ack_wait_s: float = 60.0

    def delay_for(self, delivery: int) -> float:
        index = min(max(delivery - 1, 0), len(self.backoff_s) - 1)
        return self.backoff_s[index]


_policies: dict[str, RetryPolicy] = {}


def dead_letter_subject(stream: str, consumer: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{stream}.{consumer}"


async def dead_letter(msg: Msg, error: BaseException | str) -> None:
    """Copy ``msg`` with its provenance to ``DEAD_LETTERS`` (deduplicated by origin)."""
    meta = msg.metadata
    consumer = meta.consumer or "unknown"
    original = msg.headers or {}
    # Keep the original's own headers (content-type, correlation_id…) so a redriven
    # copy decodes and traces like the original; drop the ones that steer JetStream.
    headers = {
        name: value
        for name, value in original.items()
        if not name.lower().startswith(("nats-", "vp-"))
    }
    headers |= {
        H_SUBJECT: msg.subject,
        H_STREAM: meta.stream,
        H_SEQ: str(meta.sequence.stream),
        H_CONSUMER: consumer,
        H_ERROR: _one_line(error)[:1000],
        H_DELIVERIES: str(meta.num_delivered),
        # One dead letter per (stream message, consumer), however often we get here.
        "Nats-Msg-Id": f"dl:{meta.stream}:{meta.sequence.stream}:{consumer}",
    }
    original_id = original.get("Nats-Msg-Id")
    if original_id:
        headers[H_MSG_ID] = original_id
    js = msg._client.jetstream()
    await js.publish(dead_letter_subject(meta.stream, consumer), msg.data, headers=headers)


def _one_line(error: BaseException | str) -> str:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


class AckPolicyMiddleware(BaseMiddleware):
    """Acks, naks with backoff, or dead-letters every JetStream message (see module doc).

    Each outcome is counted and the handler timed (events/metrics.py), per consumer.
    """

    _started: float | None = None

    async def on_receive(self) -> None:
        self._started = time.perf_counter()

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        raw = self.msg
        # A batch subscriber hands over a list; each message is settled on its own
        # (one the handler dead-lettered already is skipped).
        msgs = raw if isinstance(raw, list) else [raw]
        pending = [m for m in msgs if isinstance(m, Msg) and _is_jetstream(m) and not m._ackd]
        if not pending:
            return False
        if self._started is not None:
            HANDLER_SECONDS.labels(
                pending[0].metadata.consumer or "", event_type_of(pending[0].subject)
            ).observe(time.perf_counter() - self._started)
        if exc_val is None:
            await asyncio.gather(*(_ack(msg) for msg in pending))
            return False
        if not isinstance(exc_val, Exception):
            return False  # cancellation / shutdown: leave it for redelivery
        for msg in pending:
            await _settle_failure(msg, exc_val)
        return True  # handled here; FastStream need not log it again


async def _ack(msg: Msg) -> None:
    await msg.ack_sync()
    CONSUMED.labels(msg.metadata.consumer or "", event_type_of(msg.subject), ACKED).inc()


async def _settle_failure(msg: Msg, error: Exception) -> None:
    """Nak ``msg`` with its policy's delay, or dead-letter it when it is poison or out
    of deliveries."""
    meta = msg.metadata
    consumer = meta.consumer or ""
    policy = _policies.get(consumer, RetryPolicy())
    event_type = event_type_of(msg.subject)
    delivery = meta.num_delivered
    poison = isinstance(error, POISON_ERRORS)
    where = {"consumer": consumer, "subject": msg.subject, "seq": meta.sequence.stream}
    if poison or delivery >= policy.max_deliver:
        await dead_letter(msg, error)
        await msg.term()
        CONSUMED.labels(consumer, event_type, DEAD_LETTERED).inc()
        log.error(
            "dead-lettered", **where, deliveries=delivery, poison=poison, error=_one_line(error)
        )
    else:
        delay = policy.delay_for(delivery)
        await msg.nak(delay=delay)
        CONSUMED.labels(consumer, event_type, RETRIED).inc()
        log.warning(
            "handler failed, will retry",
            **where,
            delivery=delivery,
            retry_in_s=delay,
            error=_one_line(error),
        )


def _is_jetstream(msg: Msg) -> bool:
    return bool(msg.reply) and msg.reply.startswith("$JS.ACK.")


EventT = TypeVar("EventT", bound=Event)
Handler = Callable[..., Awaitable[None]]


def durable_subscriber(
    broker: NatsBroker,
    event_type: type[Event],
    *,
    durable: str,
    policy: RetryPolicy | None = None,
    subject: str | None = None,
    batch_size: int = 64,
    max_workers: int = 1,
    batch_window_s: float | None = None,
    description: str | None = None,
    include_in_schema: bool = True,
) -> Callable[[Handler], Any]:
    """Register a durable pull consumer of ``event_type`` on its existing stream.

    Replicas of a component share the durable name and so split the work. The
    stream is bound with ``declare=False``: ``videopick events init`` owns it.
    Several fetchers on one durable document it once (``include_in_schema``).

    With ``batch_window_s`` the handler takes ``list[event_type]``: up to
    ``batch_size`` messages gathered for at most that long. Each is decoded on its
    own, so an undecodable one is dead-lettered alone, not with its batch; the rest
    are acked together once the handler returns (or naked together when it raises).
    """
    if batch_window_s is not None and max_workers > 1:
        # FastStream would drop the batching with a warning, and the handler would get
        # single events it does not expect.
        raise ValueError(f"{durable}: batch_window_s and max_workers do not combine")
    policy = policy or RetryPolicy()
    _policies[durable] = policy
    subject = subject or event_type.subject_filter()
    stream = stream_for_subject(subject.replace("*", "x").replace(">", "x"))
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=JsAckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        # One more than the policy: the middleware dead-letters on the last one; the
        # server's own limit only stops a crash-looping process.
        max_deliver=policy.max_deliver + 1,
        ack_wait=policy.ack_wait_s,
        filter_subject=subject,
    )
    kwargs: dict[str, Any] = {}
    if max_workers > 1:
        kwargs["max_workers"] = max_workers
    pull_sub: PullSub[bool] = PullSub(batch_size=batch_size, timeout=1.0)
    if batch_window_s is not None:
        pull_sub = PullSub(batch_size=batch_size, timeout=batch_window_s, batch=True)
        kwargs["decoder"] = _batch_decoder(event_type)
    return broker.subscriber(  # type: ignore[no-any-return]
        subject,
        stream=JStream(stream.name, declare=False),
        durable=durable,
        pull_sub=pull_sub,
        config=config,
        ack_policy=AckPolicy.MANUAL,
        title=f"{durable}:{event_type.event_type()}",
        description=description or (event_type.__doc__ or "").strip() or None,
        include_in_schema=include_in_schema,
        **kwargs,
    )


def _batch_decoder(
    event_type: type[EventT],
) -> Callable[[StreamMessage[list[Msg]]], Awaitable[list[EventT]]]:
    async def decode(batch: StreamMessage[list[Msg]]) -> list[EventT]:
        """The batch's events, in order; an undecodable message is dead-lettered at
        once (and so skipped when the batch is acked)."""
        events: list[EventT] = []
        for msg in batch.raw_message:
            if msg._ackd:
                continue
            try:
                events.append(msgspec.json.decode(msg.data, type=event_type))
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                await _settle_failure(msg, error)
        return events

    return decode


async def run_once(
    sessions: async_sessionmaker[AsyncSession],
    consumer: str,
    event: Event,
    effect: Callable[[AsyncSession], Awaitable[None]],
) -> bool:
    """Run ``effect`` in one transaction with the processed-event record.

    Returns False (and does nothing) when this consumer already processed the event.
    """
    async with sessions() as session, session.begin():
        if not await claim_event(session, consumer, event.event_id):
            log.debug("duplicate skipped", consumer=consumer, event_id=event.event_id)
            return False
        await effect(session)
    return True
