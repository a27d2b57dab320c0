"""What the operator dashboard shows from a gateway: live streams, viewers, chat deliveries.

Read at scrape time from the process's own state (a custom collector, no bookkeeping
on the hot path): the live sessions this gateway's feed knows, the distinct viewers
it served in the last window, and the chat frames its hub queued to sockets. Summed
over gateways by Prometheus (infra/grafana/dashboards/videopick.json). Served by
``/metrics`` in single-process mode (one gateway per process, as ``videopick
cluster``, compose and Kubernetes run it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from litestar import Litestar
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class OperatorCollector(Collector):
    """One per process, summing over the gateway apps running in it (tests run several)."""

    def __init__(self) -> None:
        self.apps: list[Litestar] = []

    def collect(self) -> Iterator[Metric]:
        sessions = viewers = delivered = sockets = rooms = 0
        for app in list(self.apps):
            live = app.state.get("live")
            if live is not None:
                sessions += len(live.state.live_sessions())
                viewers += sum(live.viewers.counts().values())
            chat = app.state.get("chat")
            with contextlib.suppress(RuntimeError):  # the hub exists once chat has started
                if chat is not None:
                    delivered += chat.hub.delivered
                    rooms += len(chat.hub.rooms)
                    sockets += sum(len(room.members) for room in chat.hub.rooms.values())
        yield GaugeMetricFamily(
            "videopick_live_streams", "Live streams this gateway can serve", value=sessions
        )
        yield GaugeMetricFamily(
            "videopick_live_viewers", "Distinct viewers served in the last window", value=viewers
        )
        yield CounterMetricFamily(
            "videopick_chat_deliveries", "Chat frames queued to WebSockets", value=delivered
        )
        yield GaugeMetricFamily(
            "videopick_chat_subscribers", "Chat subscriptions on this gateway", value=sockets
        )
        yield GaugeMetricFamily(
            "videopick_chat_rooms", "Chat channels open on this gateway", value=rooms
        )


_COLLECTOR = OperatorCollector()


@contextlib.asynccontextmanager
async def ops_metrics_lifespan(app: Litestar) -> AsyncIterator[None]:
    if not _COLLECTOR.apps:
        REGISTRY.register(_COLLECTOR)
    _COLLECTOR.apps.append(app)
    try:
        yield
    finally:
        _COLLECTOR.apps.remove(app)
        if not _COLLECTOR.apps:
            REGISTRY.unregister(_COLLECTOR)
