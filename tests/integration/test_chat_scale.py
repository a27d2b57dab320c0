"""Two gateway processes and two chat workers: every message once, one order everywhere.

The chat workers share one durable consumer, so a channel's messages are decided by
both; the channel row lock gives them consecutive offsets, and each gateway delivers
in offset order whatever order the events reach it in (gateway/centrifuge/sequencer).
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from tests.integration.chat_stack import (
    Listener,
    chat_knows,
    chat_settings,
    listen,
    register,
    start_gateway,
    start_worker,
)

pytestmark = pytest.mark.integration

PUBLISHERS_PER_GATEWAY = 2
MESSAGES_EACH = 25
LISTENERS_PER_GATEWAY = 2


async def test_two_gateways_two_workers_same_order_once(
    settings: Settings, database_url: str, event_streams: JetStreamContext
) -> None:
    config = chat_settings(settings, database_url)
    async with contextlib.AsyncExitStack() as stack:
        workers = [await stack.enter_async_context(start_worker(config)) for _ in range(2)]
        gateways = [await stack.enter_async_context(start_gateway(config)) for _ in range(2)]
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=gateways[0].url))
        streamer = await register(http, "streamer")
        senders = [await register(http, f"sender{n}") for n in range(2 * PUBLISHERS_PER_GATEWAY)]
        await chat_knows(workers[0], streamer, *senders)
        channel = f"chat:{streamer.stream_id}"

        listeners: list[Listener] = []
        for gateway in gateways:
            for _ in range(LISTENERS_PER_GATEWAY):
                listeners.append(await listen(gateway.ws_url, channel))
        publishers: list[Listener] = []
        for number, sender in enumerate(senders):
            gateway = gateways[number % 2]
            publishers.append(await listen(gateway.ws_url, channel, sender.token))

        async def send_all(publisher: Listener, number: int) -> None:
            for index in range(MESSAGES_EACH):
                await publisher.sub.publish({"text": f"p{number}-{index}"})

        await asyncio.gather(*(send_all(p, n) for n, p in enumerate(publishers)))
        total = len(publishers) * MESSAGES_EACH
        # A last message after all others were accepted: anything arriving between
        # the totals and it would be a duplicate.
        await publishers[0].sub.publish({"text": "the end"})

        sequences = []
        for listener in [*listeners, *publishers]:
            received = await listener.messages(total + 1, within_s=30)
            listener.history = received
            texts = [m["text"] for m in received]
            assert texts[-1] == "the end"
            assert len(set(texts)) == total + 1  # each once
            sequences.append([m["id"] for m in received])
            assert listener.offsets == list(range(1, total + 2))
        assert all(seq == sequences[0] for seq in sequences)  # one order on both gateways
        # Each publisher waited for every acceptance: its lines keep its order.
        texts = [m["text"] for m in listeners[0].history]
        for number in range(len(publishers)):
            mine = [t for t in texts if t.startswith(f"p{number}-")]
            assert mine == [f"p{number}-{index}" for index in range(MESSAGES_EACH)]
        decided = [w.service.decided for w in workers]
        assert sum(decided) == total + 1  # every message decided once, by one of them
        print(f"decisions per worker: {decided}")
        for listener in [*listeners, *publishers]:
            await listener.close()
