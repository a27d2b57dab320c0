"""presence_stats counts every gateway's members: two real gateway processes, the SDK.

Two ``python -m gateway`` processes (real sockets, separate memory) and a chat worker;
centrifuge-python clients on both. Each gateway announces its rooms over core NATS
(gateway/centrifuge/presence.py), so either one answers for both: clients summed,
users counted once even when the same user is on both gateways.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from tests.fixtures.gateway import gateway_process
from tests.integration.chat_stack import (
    Listener,
    chat_knows,
    chat_settings,
    listen,
    register,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration


def ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/connection/websocket"


async def stats(listener: Listener) -> tuple[int, int]:
    result = await listener.sub.presence_stats(timeout=5)
    return result.num_clients, result.num_users


async def wait_stats(listeners: list[Listener], expected: tuple[int, int], what: str) -> None:
    """Until every listener (whichever gateway it is on) reads ``expected``."""

    async def all_agree() -> bool:
        return all([await stats(listener) == expected for listener in listeners])

    await wait_for(all_agree, what, deadline_s=10)


@contextlib.contextmanager
def two_gateways(config: Settings, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with (
        gateway_process(config, tmp_path / "a.log") as a,
        gateway_process(config, tmp_path / "b.log") as b,
    ):
        yield a, b


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_presence_stats_counts_both_gateways(
    settings: Settings, database_url: str, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    config = chat_settings(settings, database_url)
    listeners: list[Listener] = []
    async with start_worker(config) as worker:
        with two_gateways(config, tmp_path) as (a, b):
            async with httpx.AsyncClient(base_url=a) as http:
                alice = await register(http, "alice")
                bob = await register(http, "bob")
            await chat_knows(worker, alice, bob)
            channel = f"chat:{alice.stream_id}"
            try:
                # Gateway A: alice twice and an anonymous viewer.
                on_a = [
                    await listen(ws(a), channel, alice.token),
                    await listen(ws(a), channel, alice.token),
                    await listen(ws(a), channel),
                ]
                # Gateway B: alice again, bob, an anonymous viewer.
                on_b = [
                    await listen(ws(b), channel, alice.token),
                    await listen(ws(b), channel, bob.token),
                    await listen(ws(b), channel),
                ]
                listeners = on_a + on_b
                # 6 clients; users alice and bob (anonymous viewers are nobody).
                await wait_stats(listeners, (6, 2), "6 clients, 2 users on both gateways")

                # Bob leaves gateway B: A sees it too.
                await on_b[1].close()
                listeners.remove(on_b[1])
                await wait_stats(listeners, (5, 1), "bob gone everywhere")

                # Another room is another count: nobody in it.
                other = await listen(ws(a), f"chat:{bob.stream_id}")
                listeners.append(other)
                assert await stats(other) == (1, 0)
                assert await stats(on_b[0]) == (5, 1)
            finally:
                for listener in listeners:
                    with contextlib.suppress(Exception):
                        await listener.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stopped_gateway_drops_out_of_presence(
    settings: Settings, database_url: str, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    config = chat_settings(settings, database_url)
    listeners: list[Listener] = []
    async with start_worker(config) as worker:
        with gateway_process(config, tmp_path / "a.log") as a:
            async with httpx.AsyncClient(base_url=a) as http:
                alice = await register(http, "alice")
            await chat_knows(worker, alice)
            channel = f"chat:{alice.stream_id}"
            try:
                on_a = await listen(ws(a), channel, alice.token)
                listeners.append(on_a)
                with gateway_process(config, tmp_path / "b.log") as b:
                    # A gateway that starts late still learns what A has (sync).
                    on_b = await listen(ws(b), channel)
                    listeners.append(on_b)
                    await wait_stats(listeners, (2, 1), "both gateways counted")
                    listeners.remove(on_b)
                    # B stops (SIGTERM) with its client still connected.
                await wait_stats(listeners, (1, 1), "the stopped gateway dropped")
                with contextlib.suppress(Exception):
                    await on_b.close()
            finally:
                for listener in listeners:
                    with contextlib.suppress(Exception):
                        await listener.close()
