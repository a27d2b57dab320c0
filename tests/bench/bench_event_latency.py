"""How late an idle consumer gets an event, and what a user waits for it.

    .venv/bin/pytest -m bench tests/bench/bench_event_latency.py -s

Events come one at a time with idle pauses in between (``VIDEOPICK_BENCH_EVENTS``,
default 60; pauses of 0.05-1.3 s), the way most of the platform's consumers see them.

- **Fetch loops**, side by side on a real nats-server: two durables on one stream, both
  in FastStream's pull loop (``fetch(64, timeout=1.0)`` again and again), one through
  nats-py's own ``fetch``, one through ours (events/pull_fetch.py). Printed: each
  one's delay from publish to the fetch's return.
- **An upload's verdict**: ``videopick up`` as ``make run`` starts it; 1,000 random
  bytes uploaded through tus, then the status page polled every 10 ms until it says
  the uploader rejected them (two events through two consumers: ``chunk.uploaded``
  to the uploader, ``upload.rejected`` to the gateway). Ours only: the platform runs
  one fetch.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from events import pull_fetch
from tests.fixtures.gateway import register_user
from tests.fixtures.platform import async_running_platform

pytestmark = [pytest.mark.integration, pytest.mark.bench]

EVENTS = int(os.environ.get("VIDEOPICK_BENCH_EVENTS", "60"))
PAUSE_S = (0.05, 1.3)
VERDICT_TIMEOUT_S = 30.0
UNDECIDED = ("uploading", "processing")  # an upload's states before the uploader's verdict

Fetch = Callable[..., Awaitable[list[Msg]]]


def summary(delays_s: list[float]) -> str:
    ms = sorted(delay * 1e3 for delay in delays_s)
    p90 = ms[int(len(ms) * 0.9)]
    return f"p50 {statistics.median(ms):7.1f}  p90 {p90:7.1f}  max {ms[-1]:7.1f} ms"


async def fetch_loop(
    fetch: Fetch, subscription: JetStreamContext.PullSubscription, delays: list[float]
) -> None:
    """FastStream's pull loop, until every event came; each carries its publish time."""
    while len(delays) < EVENTS:
        try:
            messages = await fetch(subscription, 64, 1.0)
        except nats.errors.TimeoutError:
            continue
        arrived = time.monotonic()
        for message in messages:
            delays.append(arrived - float(message.data))
            await message.ack()


async def test_an_idle_consumer_against_nats_pys_own_fetch(
    js: JetStreamContext, scratch_subject: str
) -> None:
    pull_fetch.install()
    theirs = inspect.unwrap(JetStreamContext.PullSubscription.fetch)
    ours = pull_fetch.translate_timeouts(pull_fetch.promptly(theirs))
    delays: dict[str, list[float]] = {"nats-py": [], "ours": []}
    loops = [
        asyncio.create_task(
            fetch_loop(fetch, await js.pull_subscribe(scratch_subject, durable=name), got)
        )
        for fetch, name, got in (
            (pull_fetch.translate_timeouts(theirs), "theirs", delays["nats-py"]),
            (ours, "ours", delays["ours"]),
        )
    ]
    try:
        for _ in range(EVENTS):
            await asyncio.sleep(random.uniform(*PAUSE_S))
            await js.publish(scratch_subject, str(time.monotonic()).encode())
        await asyncio.wait_for(asyncio.gather(*loops), timeout=5.0)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    print(f"\nBENCH an idle consumer's delay, {EVENTS} events, fetch(64, timeout=1.0) loops")
    for name, got in delays.items():
        print(f"  {name:<10} {summary(got)}")
    print(f"  ratio ours / nats-py, max: {max(delays['ours']) / max(delays['nats-py']):.2f}")
    for name, got in delays.items():
        assert len(got) == EVENTS, name


async def test_an_uploads_verdict(tmp_path: Path) -> None:
    delays: list[float] = []
    async with (
        async_running_platform(tmp_path / "platform") as platform,
        httpx.AsyncClient(base_url=platform.base_url, timeout=30.0) as http,
    ):
        user = await register_user(http, "latency")
        headers = {**user.headers, "Tus-Resumable": "1.0.0"}
        for _ in range(EVENTS):
            await asyncio.sleep(random.uniform(*PAUSE_S))
            created = await http.post("/files/", headers={**headers, "Upload-Length": "1000"})
            assert created.status_code == 201, created.text
            location = created.headers["location"]
            patched = await http.patch(
                location,
                headers={
                    **headers,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
                content=os.urandom(1000),
            )
            assert patched.status_code == 204, patched.text
            answered = time.monotonic()
            upload_id = location.rstrip("/").rsplit("/", 1)[1]
            while (state := await upload_state(http, headers, upload_id)) in UNDECIDED:
                assert time.monotonic() - answered < VERDICT_TIMEOUT_S
                await asyncio.sleep(0.01)
            assert state == "rejected"  # random bytes are no media
            delays.append(time.monotonic() - answered)
    print(f"\nBENCH an upload's verdict after its last 204, {EVENTS} uploads of 1,000 bytes")
    print(f"  ours       {summary(delays)}")


async def upload_state(http: httpx.AsyncClient, headers: dict[str, str], upload_id: str) -> str:
    response = await http.get(f"/api/v2/upload/{upload_id}", headers=headers)
    assert response.status_code == 200, response.text
    state: str = response.json()["state"]
    return state
