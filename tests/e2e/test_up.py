"""`videopick up` brings the platform up and Ctrl-C leaves no process behind."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import nats
import pytest

from common.components import available_components
from tests.fixtures.platform import STARTUP_TIMEOUT_S, running_platform
from tests.fixtures.processes import descendants

pytestmark = pytest.mark.e2e


async def _stream_names(url: str) -> set[str]:
    client = await nats.connect(url)
    try:
        return {str(info.config.name) for info in await client.jetstream().streams_info()}
    finally:
        await client.close()


def test_up_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    # ready=False: up must print its summary even where no gateway is installed.
    # On exit running_platform sends SIGINT and asserts exit code 0 and no leftovers.
    with running_platform(tmp_path, ready=False) as platform:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # NATS with the catalog's streams, and the database file, are there.
        names = asyncio.run(_stream_names(platform.nats_url))
        assert {"ACCOUNTS", "STREAMS", "CHAT", "DEAD_LETTERS"} <= names
        assert (platform.data_dir / "videopick.db").exists()

        components = available_components()
        if "gateway" in components:
            with httpx.Client() as http:
                while True:
                    try:
                        response = http.get(f"{platform.base_url}/healthz")
                        if response.status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, platform.logs_tail()
                    time.sleep(0.2)

        # nats-server + each component
        assert len(descendants(platform.process.pid)) >= 1 + len(components)
    assert platform.process.returncode == 0
    assert not platform.data_dir.exists()  # a clean stop leaves no data behind
