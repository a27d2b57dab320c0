"""Prometheus metrics every component gets from the event plumbing, plus its listener.

The consumer base (:class:`events.consumer.AckPolicyMiddleware`) counts each message's
outcome and times its handler; :class:`events.publisher.EventPublisher` counts what it
publishes. Labels are the durable consumer name and the event subject's *type* (all
but the key token: ``upload.created``), never ids: a bounded set of series.

Non-HTTP components serve them on ``metrics_host:metrics_port`` when the port is set
(:func:`serve_metrics`); the gateway's own ``/metrics`` already includes them.
"""

from __future__ import annotations

import errno
from typing import Final

from prometheus_client import Counter, Histogram, start_http_server

from common.logs import get_logger
from common.settings import Settings

log = get_logger(__name__)

ACKED: Final = "acked"
RETRIED: Final = "nak_retried"
DEAD_LETTERED: Final = "dead_lettered"

CONSUMED = Counter(
    "videopick_events_consumed_total",
    "JetStream messages handled by a durable consumer, by outcome",
    ["consumer", "event_type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "videopick_event_handler_duration_seconds",
    "Time a consumer's handler spent on one message (any outcome)",
    ["consumer", "event_type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0),
)
PUBLISHED = Counter(
    "videopick_events_published_total",
    "Events acknowledged by JetStream (PubAck), by producer and event type",
    ["producer", "event_type"],
)


def event_type_of(subject: str) -> str:
    """``upload.created.<id>`` → ``upload.created``: the type, never the key token."""
    return subject.rsplit(".", 1)[0]


def serve_metrics(settings: Settings, component: str) -> bool:
    """Start the ``/metrics`` listener when ``metrics_port`` is set; True if it listens.

    A port already taken (a second process of the same component on one host) is
    logged and skipped: metrics are not worth refusing to run for.
    """
    if not settings.metrics_port:
        return False
    try:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        log.warning(
            "metrics port in use, not serving metrics",
            component=component,
            port=settings.metrics_port,
        )
        return False
    log.info(
        "metrics listening",
        component=component,
        url=f"http://{settings.metrics_host}:{settings.metrics_port}/metrics",
    )
    return True
