"""The production shape for fault tests: ``common.cluster`` plus the supervisor.

One cluster for the tests in this folder (it takes ~30 s to start on 2 cores): three clustered
nats-servers, PostgreSQL, MinIO, and 2x gateway / chat / uploader / transcoder /
ingest, exactly what ``videopick cluster`` runs. The supervisor runs as a task in
the session's event loop so a test can kill -9 a child by pid and decide whether it
comes back (``Cluster.kill``/``Cluster.revive``); every test leaves the cluster whole.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from common.cluster import LocalCluster, NatsNode
from common.settings import load_settings
from common.supervisor import Child, Supervisor
from tests.fixtures.minio import _find_binary as minio_binary

READY_TIMEOUT_S = 120.0
# Short redelivery so a killed worker's job moves on quickly in a bounded test.
CLUSTER_ENV = {
    "VIDEOPICK_TRANSCODE_ACK_WAIT_S": "6",
    "VIDEOPICK_TRANSCODE_RETRY_BACKOFF_S": "1,2,4",
    "VIDEOPICK_TRANSCODE_LADDER": "240p:400",
    "VIDEOPICK_TRANSCODE_THUMBNAILS": "2",
    "VIDEOPICK_TRANSCODE_SEGMENT_S": "2",
    "VIDEOPICK_CHAT_RATE_BURST": "1000",
    "VIDEOPICK_CHAT_RATE_PER_S": "1000",
    "VIDEOPICK_LOG_LEVEL": "INFO",
    # Every stream reserves its max_bytes on each of the three nodes.
    "VIDEOPICK_EVENTS_MAX_BYTES": str(64 * 1024**2),
}


async def wait_for(
    condition: Callable[[], Awaitable[Any]], what: str, deadline_s: float = 60.0
) -> Any:
    """Poll ``condition`` until it returns something truthy."""
    deadline = time.monotonic() + deadline_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await condition()
        except (httpx.HTTPError, OSError, nats.errors.Error) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    servers: LocalCluster
    supervisor: Supervisor

    @property
    def gateways(self) -> list[str]:
        return self.servers.gateway_urls()

    @property
    def nats_nodes(self) -> list[NatsNode]:
        return self.servers.nats.nodes

    def child(self, name: str) -> Child:
        return next(c for c in self.supervisor.children if c.name == name)

    def pid(self, name: str) -> int:
        process = self.child(name).process
        assert process is not None, f"{name} is not running"
        return process.pid

    def kill(self, name: str, *, hold: bool = True, group: bool = False) -> None:
        """kill -9 one component; with ``hold`` the supervisor leaves it down.

        No await between the kill and the bookkeeping: the supervisor's watch loop runs
        in this event loop and cannot see the child half-handled. ``group`` kills its
        children too, as a container's death would (children share its process group).
        """
        child = self.child(name)
        process = child.process
        assert process is not None, f"{name} is not running"
        assert process.poll() is None, f"{name} has exited"
        if group:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: pgid == pid
        else:
            process.send_signal(signal.SIGKILL)
        process.wait()
        child.exit_codes.append(process.returncode)
        child.process = None
        child.next_start = math.inf if hold else time.monotonic()

    def revive(self, name: str) -> None:
        self.child(name).next_start = time.monotonic()

    async def nats(self) -> Client:
        return await nats.connect(
            self.servers.nats.url.split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )

    async def wait_ready(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as http:
            for url in self.gateways:

                async def ready(url: str = url) -> bool:
                    return (await http.get(f"{url}/readyz")).status_code == 200

                await wait_for(ready, f"{url}/readyz", READY_TIMEOUT_S)
        await wait_for(self._workers_connected, "every component on NATS", READY_TIMEOUT_S)

    async def _workers_connected(self) -> bool:
        names: list[str] = []
        async with httpx.AsyncClient(timeout=2.0) as http:
            for node in self.nats_nodes:
                if node.process is None or node.process.poll() is not None:
                    continue
                connz = (await http.get(f"{node.monitor_url}/connz?limit=1024")).json()
                names += [c.get("name", "") for c in connz.get("connections") or []]
        running = [c for c in self.supervisor.children if c.process is not None]
        return all(any(n == f"videopick-{c.component}" for n in names) for c in running)


# Package scope: the cluster's dozen processes stop before the rest of the suite runs.
@pytest.fixture(scope="package")
async def cluster() -> AsyncIterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="vp-cluster-"))
    servers = LocalCluster(root, minio=minio_binary(), extra_env=CLUSTER_ENV)
    await asyncio.to_thread(servers.start)  # stops what it started if it fails
    loop = asyncio.get_running_loop()
    env = servers.env()
    supervisor = Supervisor(load_settings(env), env=env)
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: _spawned(supervisor, task), "the supervisor", READY_TIMEOUT_S)
        handle = Cluster(servers, supervisor)
        await handle.wait_ready()
        yield handle
    finally:
        supervisor._stopping.set()  # what its SIGINT handler does
        try:
            await asyncio.wait_for(task, 60)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await asyncio.to_thread(servers.stop)
        if not os.environ.get("VIDEOPICK_TEST_KEEP_CLUSTER"):
            await asyncio.to_thread(_rmtree, root)


async def _spawned(supervisor: Supervisor, task: asyncio.Task[int]) -> bool:
    if task.done():
        task.result()  # raises what went wrong
        raise AssertionError("the supervisor stopped")
    return bool(supervisor.children)


def _rmtree(root: Path) -> None:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
