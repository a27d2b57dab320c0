"""Chat fan-out: VideoPick against Centrifugo v6 and a Node ``ws`` broadcast server.

    .venv/bin/pytest -m bench tests/bench/bench_chat.py -s

2,000 sockets subscribed to one room; publishers at 25, 50 and 100 messages/s (50k,
100k and 200k deliveries/s offered), each rate for 10 s after a 2 s warm-up. The same
load generator (``tests/bench/chat/loadgen.mjs``, Node, forked workers) drives all
three: the Centrifugo client protocol (JSON) for VideoPick and Centrifugo, plain JSON
frames for ``ws``. Each message carries its send time; the table gives deliveries per
second received inside the window and the p50/p99 delivery latency; for VideoPick
also "decided p50", send → the chat worker's decision (the rest is the fan-out).

- VideoPick: ``VIDEOPICK_TEST_BENCH_CHAT_GATEWAYS`` (default 2) ``python -m gateway``
  processes, each on its own port, the sockets spread over them round-robin (as the
  proxy in front spreads them in production); a chat worker (``python -m chat``)
  decides every message (JetStream → moderation → PostgreSQL → ``chat.accepted``), so
  the latency is end to end (``DB=sqlite`` for the embedded default).
- Centrifugo v6.9.1 (built by ``scripts/install-go-tool.sh``), memory engine, a JSON
  config: anonymous connect, subscribe and publish in the ``chat`` namespace, history
  50 (as ours keeps).
- ``ws`` 8 (``tests/bench/chat/ws_server.mjs``): broadcast to every subscriber.

Knobs (``VIDEOPICK_TEST_BENCH_CHAT_*``): ``SOCKETS``, ``RATES`` (comma list),
``SECONDS``, ``GATEWAYS``, ``LOADGEN_WORKERS``, ``SERVERS`` (a subset, e.g.
``videopick,centrifugo``), ``DB`` (``postgresql`` or ``sqlite``), ``STRICT=1`` (fail
unless the goal is met: at 50 msg/s to 2,000 sockets = 100k deliveries/s offered,
delivered ≥ Centrifugo's, within the window's resolution, and p99 ≤ 150 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from sqlalchemy import select

from chat.models import ChatUserRow
from common.db import create_engine, session_factory
from common.nats_server import free_port
from common.settings import Settings
from tests.fixtures.gateway import REPO_ROOT, gateway_env, gateway_process
from tests.integration.chat_stack import Account, chat_settings, register, wait_for

pytestmark = pytest.mark.bench

BENCH_DIR = REPO_ROOT / "tests" / "bench" / "chat"
CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6@v6.9.1"


def _env(name: str, default: str) -> str:
    return os.environ.get(f"VIDEOPICK_TEST_BENCH_CHAT_{name}", default)


SOCKETS = int(_env("SOCKETS", "2000"))
RATES = [int(r) for r in _env("RATES", "25,50,100").split(",")]
SECONDS = float(_env("SECONDS", "10"))
GATEWAYS = int(_env("GATEWAYS", "2"))
LOADGEN_WORKERS = int(_env("LOADGEN_WORKERS", "2"))
STRICT = _env("STRICT", "") == "1"
# A subset while developing, e.g. "videopick"; the table needs centrifugo for ratios.
SERVERS = set(_env("SERVERS", "ws,centrifugo,videopick").split(","))
GOAL_RATE = 50  # to 2,000 sockets: the 100k deliveries/s offered
GOAL_P99_MS = 150.0
# The delivered rate counts arrivals inside the window, so one tick's burst landing just
# before or just after either end moves it by up to ~0.4 % at 100k/s (two messages to
# 2,000 sockets): Centrifugo has measured 100,200/s of 100,000 offered. Rates closer
# than this are equal; the loss column (deliveries of the window's messages) is exact.
RATE_RESOLUTION = 0.005
READY_TIMEOUT_S = 60.0


# --- the servers -------------------------------------------------------------------------


def _npm_ci() -> None:
    """The ``ws`` package, pinned by tests/bench/chat/package-lock.json."""
    stamp = BENCH_DIR / "node_modules" / ".synced"
    lock = BENCH_DIR / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
        cwd=BENCH_DIR,
        check=True,
    )
    stamp.touch()


def _centrifugo_binary() -> Path:
    out = subprocess.run(
        ["bash", "scripts/install-go-tool.sh", "centrifugo", CENTRIFUGO_MODULE],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)  # polling a condition with a deadline
    raise RuntimeError(f"port {port} not open in {READY_TIMEOUT_S} s:\n{log.read_text()}")


@contextlib.contextmanager
def _serve(command: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=BENCH_DIR, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_port(port, process, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def centrifugo_config(port: int) -> dict[str, Any]:
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "client": {"allow_anonymous_connect_without_token": True, "allowed_origins": ["*"]},
        "channel": {
            "namespaces": [
                {
                    "name": "chat",
                    # Anonymous needs both flags (centrifugo internal/client/handler.go).
                    "allow_subscribe_for_client": True,
                    "allow_subscribe_for_anonymous": True,
                    "allow_publish_for_client": True,
                    "allow_publish_for_anonymous": True,
                    "history_size": 50,
                    "history_ttl": "300s",
                }
            ]
        },
    }


# --- running a load -----------------------------------------------------------------------


async def run_load(config: dict[str, Any]) -> dict[str, Any]:
    """One loadgen run; its JSON verdict (last stdout line), or ``{"error": …}``: one
    run that breaks (a saturated peer that never drains) must not hide the others."""
    full = {
        "sockets": SOCKETS,
        "seconds": SECONDS,
        "workers": LOADGEN_WORKERS,
        # Several publishers: ours lets one connection wait for 8 decisions at most.
        "publishers": 16,
        **config,
    }
    process = await asyncio.create_subprocess_exec(
        "node",
        str(BENCH_DIR / "loadgen.mjs"),
        json.dumps(full),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        return {"error": stderr.decode()[-2000:]}
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def chat_worker_process(settings: Settings, log: Path) -> Iterator[None]:
    """``python -m chat``, as ``videopick up`` runs it, without the rate limit; it logs
    its stage timings (chat.stages) for :func:`print_stages`."""
    env = gateway_env(
        settings,
        0,
        {
            "VIDEOPICK_CHAT_RATE_BURST": "1000000",
            "VIDEOPICK_CHAT_RATE_PER_S": "1000000",
            "VIDEOPICK_CHAT_STAGES": "1",
            "VIDEOPICK_LOG_LEVEL": "INFO",
        },
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "chat"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out
        )
        try:
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def chat_knows(database_url: str, account: Account) -> None:
    """Until the chat worker has consumed the account's ``user.registered``."""
    engine = create_engine(database_url)
    sessions = session_factory(engine)

    async def known() -> bool:
        async with sessions() as session:
            found = await session.scalar(
                select(ChatUserRow.user_id).where(ChatUserRow.user_id == account.id)
            )
        return found is not None

    try:
        await wait_for(known, "the chat worker to learn the streamer", deadline_s=60)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def videopick(
    settings: Settings, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[list[str], str, str]]:
    """Gateways + a chat worker; (WebSocket URLs, a publisher's token, the channel)."""
    config = chat_settings(settings, database_url)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(chat_worker_process(config, tmp_path / "chat.log"))
        urls = [
            stack.enter_context(gateway_process(config, tmp_path / f"gateway{n}.log"))
            for n in range(GATEWAYS)
        ]
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=urls[0]))
        account = await register(http, "benchstreamer")
        await chat_knows(config.resolved_database_url, account)
        ws_urls = [u.replace("http://", "ws://") + "/connection/websocket" for u in urls]
        yield ws_urls, account.token, f"chat:{account.stream_id}"


def print_stages(log: Path) -> None:
    """The chat worker's stage timings (ms, p50/p99 per 5 s) during the runs."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "chat stages" in line]
    print(f"\nchat worker stages (ms p50/p99 every 5 s; size = messages per batch): {len(lines)}")
    for line in lines:
        print("  " + line[line.index("chat stages") :])


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def print_table(rows: list[tuple[str, int, dict[str, Any]]]) -> None:
    by_rate = {
        rate: r for name, rate, r in rows if name.startswith("centrifugo") and "error" not in r
    }
    header = (
        f"{'server':<24}{'msg/s':>6}{'offered/s':>11}{'delivered/s':>13}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'loss':>7}{'vs centrifugo':>15}{'loadgen cpu':>13}{'decided p50':>13}"
    )
    print(f"\nchat fan-out: {SOCKETS} sockets, one room, {SECONDS:g} s per rate\n{header}")
    print("-" * len(header))
    for name, rate, r in rows:
        if "error" in r:
            print(f"{name:<24}{rate:>6}  failed: {r['error'].strip().splitlines()[0][:60]}")
            continue
        peer = by_rate.get(rate)
        ratio = r["delivered_per_s"] / peer["delivered_per_s"] if peer else None
        loss = r["loss"]
        cpu = "/".join(f"{c:.2f}" for c in r["loadgen_cpu_per_worker"])
        print(
            f"{name:<24}{rate:>6}{r['offered_per_s']:>11,}{r['delivered_per_s']:>13,.0f}"
            f"{_fmt(r['p50_ms']):>9}{_fmt(r['p99_ms']):>9}"
            f"{'-' if loss is None else f'{loss:.1%}':>7}{_fmt(ratio, 2):>15}{cpu:>13}"
            f"{_fmt(r.get('decided_p50_ms')):>13}"
        )


# PostgreSQL, the production shape (the fixture's throw-away cluster). With SQLite, the
# embedded default, every query is a thread hop (aiosqlite) and every commit an fsync:
# on a loaded 2-core machine the decisions alone took ~300 ms at p50.
@pytest.mark.parametrize("database_url", [_env("DB", "postgresql")], indirect=True)
@pytest.mark.timeout(3600)  # nine runs of ~30 s, more when a server saturates
async def test_chat_fanout_against_centrifugo_and_ws(
    settings: Settings, database_url: str, event_streams: JetStreamContext, tmp_path: Path
) -> None:
    _npm_ci()
    centrifugo = _centrifugo_binary()
    ws_port, cf_port = free_port(), free_port()
    cf_config = tmp_path / "centrifugo.json"
    cf_config.write_text(json.dumps(centrifugo_config(cf_port)))
    ours = f"videopick ×{GATEWAYS} gw"
    rows: list[tuple[str, int, dict[str, Any]]] = []
    with (
        _serve(["node", "ws_server.mjs", str(ws_port)], ws_port, tmp_path / "ws.log"),
        _serve([str(centrifugo), "--config", str(cf_config)], cf_port, tmp_path / "cf.log"),
    ):
        async with videopick(settings, database_url, tmp_path) as (urls, token, channel):
            servers: list[tuple[str, dict[str, Any]]] = [
                ("ws (node)", {"mode": "plain", "urls": [f"ws://127.0.0.1:{ws_port}"]}),
                (
                    "centrifugo v6.9.1",
                    {
                        "mode": "centrifugo",
                        "urls": [f"ws://127.0.0.1:{cf_port}/connection/websocket"],
                    },
                ),
                (ours, {"mode": "centrifugo", "urls": urls, "token": token}),
            ]
            servers = [s for s in servers if s[0].split()[0] in SERVERS]
            for rate in RATES:
                for name, server in servers:
                    result = await run_load({"channel": channel, "rate": rate, **server})
                    rows.append((name, rate, result))
                    print(f"{name} @ {rate}/s: {json.dumps(result)}")
    print_table(rows)
    if (tmp_path / "chat.log").exists():
        print_stages(tmp_path / "chat.log")
    for name, _rate, result in rows:
        if "error" in result and not name.startswith("videopick"):
            continue  # a peer that fell over is in the table; ours may not
        assert "error" not in result, (name, result)
        assert result["connected"] == SOCKETS, (name, result["failures"])
        assert result["delivered_per_s"] > 0, name
    if STRICT:
        assert {"ws", "centrifugo", "videopick"} == SERVERS
        peer = next(r for n, rate, r in rows if n.startswith("centrifugo") and rate == GOAL_RATE)
        mine = next(r for n, rate, r in rows if n == ours and rate == GOAL_RATE)
        assert mine["delivered_per_s"] >= peer["delivered_per_s"] * (1 - RATE_RESOLUTION)
        assert mine["p99_ms"] is not None
        assert mine["p99_ms"] <= GOAL_P99_MS
