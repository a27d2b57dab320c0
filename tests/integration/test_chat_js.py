"""The official JS SDK (npm ``centrifuge``, pinned in tests/js/package-lock.json) under Node.

``tests/js/chat_client.mjs`` drives it; ``npm ci`` installs it from the lock file the
first time (the registry, never a CDN).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from common.settings import Settings
from tests.integration.chat_stack import (
    chat_knows,
    chat_settings,
    listen,
    register,
    start_gateway,
    start_worker,
)

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def node_sdk() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed for the JS SDK test (apt-get install nodejs npm)")
    if not (JS_DIR / "node_modules" / "centrifuge").exists():
        import subprocess

        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)
    return node


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest) -> str:
    """One backend: the JS SDK does not care; the Python SDK tests run on both."""
    url: str = request.getfixturevalue("_sqlite_migrated")
    return url


async def test_js_sdk_chats(
    node_sdk: str, settings: Settings, sqlite_url: str, event_streams: JetStreamContext
) -> None:
    config = chat_settings(settings, sqlite_url)
    async with (
        start_worker(config) as worker,
        start_gateway(config) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        streamer = await register(http, "streamer")
        carol = await register(http, "carol")
        await chat_knows(worker, streamer, carol)
        channel = f"chat:{streamer.stream_id}"
        # Something in the history first, from the Python SDK.
        python = await listen(gateway.ws_url, channel, carol.token)
        await python.sub.publish({"text": "from python"})
        await python.next()
        env = dict(
            os.environ,
            WS_URL=gateway.ws_url,
            CHANNEL=channel,
            TOKEN=carol.token,
            TEXT="from node <b>not bold</b> 🔥",
        )
        process = await asyncio.create_subprocess_exec(
            node_sdk,
            "--experimental-websocket",
            "--no-warnings",
            "chat_client.mjs",
            cwd=JS_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), NODE_DEADLINE_S)
        assert process.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["ok"], result
        assert result["history"] == ["from python"]
        assert result["subscribed"]["recoverable"] is True
        assert result["own"]["text"] == "from node <b>not bold</b> 🔥"
        assert result["own"]["user"] == {"id": carol.id, "name": "carol"}
        assert result["ownOffset"] == 2
        assert result["anonSaw"] == "from node <b>not bold</b> 🔥"
        assert result["anonPublish"] == {"code": 103, "message": "permission denied"}
        assert result["historyNewest"] == "from node <b>not bold</b> 🔥"
        assert result["presence"]["clients"] >= 2
        # And the Python client saw the Node one's message.
        assert (await python.next())["text"] == "from node <b>not bold</b> 🔥"
        await python.close()
