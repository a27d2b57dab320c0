"""Prometheus metrics from the event plumbing, on a real JetStream.

The consumer base counts each outcome and times the handler; the publisher counts what
JetStream acknowledged; a component started with ``VIDEOPICK_METRICS_PORT`` serves them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from common.nats_server import free_port
from common.settings import Settings
from events.broker import create_broker
from events.catalog import ChatMessage, UserRegistered
from events.consumer import RetryPolicy, durable_subscriber
from events.deadletters import DEAD_LETTER_STREAM
from events.errors import PermanentError
from events.publisher import EventPublisher
from tests.integration.test_events_delivery import settled, stream_count, wait_until
from tests.unit.test_events_catalog import sample_event

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONSUMED = "videopick_events_consumed_total"


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="metrics-test")
    yield broker
    await broker.stop()


async def test_a_dead_lettered_poison_message_is_counted_and_timed(
    broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    durable = "metrics-poison"
    outcome = {"consumer": durable, "event_type": "chat.message"}
    timed = {"consumer": durable, "event_type": "chat.message"}
    published = {"producer": "metrics-test", "event_type": "chat.message"}
    before = {
        kind: _sample(CONSUMED, outcome | {"outcome": kind})
        for kind in ("acked", "nak_retried", "dead_lettered")
    }
    timed_before = _sample("videopick_event_handler_duration_seconds_count", timed)
    published_before = _sample("videopick_events_published_total", published)

    @durable_subscriber(broker, ChatMessage, durable=durable, policy=RetryPolicy(max_deliver=3))
    async def handler(event: ChatMessage) -> None:
        raise PermanentError("rule table corrupt")

    await broker.start()
    await EventPublisher(broker, producer="metrics-test").publish(sample_event(ChatMessage))

    async def dead_lettered() -> bool:
        return await stream_count(event_streams, DEAD_LETTER_STREAM) >= 1

    await wait_until(dead_lettered, what="the dead letter")
    await wait_until(lambda: settled(event_streams, "CHAT", durable), what="the term")
    after = {kind: _sample(CONSUMED, outcome | {"outcome": kind}) for kind in before}
    assert after["dead_lettered"] - before["dead_lettered"] == 1
    assert after["acked"] == before["acked"]
    assert after["nak_retried"] == before["nak_retried"]  # poison is never retried
    assert _sample("videopick_event_handler_duration_seconds_count", timed) == timed_before + 1
    assert _sample("videopick_events_published_total", published) == published_before + 1


# --- a real component serving /metrics ------------------------------------------------


@pytest.fixture
def chat_process(settings: Settings, _sqlite_migrated: str, tmp_path: Path) -> Iterator[str]:
    """``python -m chat`` with its metrics listener on a free port; yields its URL."""
    port = free_port()
    env = os.environ | {
        "VIDEOPICK_NATS_URL": settings.resolved_nats_url,
        "VIDEOPICK_DATABASE_URL": _sqlite_migrated,
        "VIDEOPICK_DATA_DIR": str(tmp_path / "data"),
        "VIDEOPICK_METRICS_PORT": str(port),
        "VIDEOPICK_METRICS_HOST": "127.0.0.1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "chat.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chat"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _acked(text: str, consumer: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == CONSUMED
                and sample.labels.get("consumer") == consumer
                and sample.labels.get("outcome") == "acked"
            ):
                return float(sample.value)
    return 0.0


async def test_a_running_component_serves_its_consumer_metrics(
    chat_process: str, broker: NatsBroker, event_streams: JetStreamContext
) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        deadline = time.monotonic() + 30.0
        while True:  # the listener starts before the worker connects: wait for both
            try:
                response = await http.get(chat_process)
                info = await event_streams.consumer_info("ACCOUNTS", "chat-users")
                if response.status_code == 200 and info.config.durable_name == "chat-users":
                    break
            except (httpx.TransportError, NotFoundError):
                pass
            assert time.monotonic() < deadline, "chat never served /metrics with its consumer"
            await asyncio.sleep(0.2)
        assert _acked(response.text, "chat-users") == 0

        await broker.connect()
        await EventPublisher(broker, producer="metrics-test").publish(sample_event(UserRegistered))

        async def counted() -> bool:
            return _acked((await http.get(chat_process)).text, "chat-users") >= 1

        await wait_until(counted, what="chat-users acked counter")
        text = (await http.get(chat_process)).text
        assert _acked(text, "chat-users") == 1
        assert 'videopick_event_handler_duration_seconds_count{consumer="chat-users"' in text
