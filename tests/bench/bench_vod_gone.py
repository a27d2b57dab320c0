"""What the deleted-video check costs VOD delivery (gateway/vod/gone.py).

    .venv/bin/pytest -m bench tests/bench/bench_vod_gone.py -s

One gateway VOD app in-process (ASGI, no sockets: the route's own cost), the folder
store, the catalog on PostgreSQL and SQLite. The same 64 KiB segment of a ready video
is fetched ``VIDEOPICK_BENCH_VOD_REQUESTS`` times (default 1500) per variant, in
interleaved rounds:

- none: no check at all (delivery before this change);
- ours: the check with its per-process cache (one query per video per ``RECHECK_S``);
- peer: a catalog query on every request (``recheck_s=0``), the naive way.

Printed: requests/s, µs per request, catalog queries made, and each variant's time
per request relative to ``none``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Any, cast

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import session_factory
from common.store.local import LocalStore
from gateway.errors import exception_handlers
from gateway.projections._store import VIDEOS
from gateway.vod import GONE_STATE_KEY, VOD_STATE_KEY, DeletedVideos, routers

pytestmark = [
    pytest.mark.bench,
    pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True),
]

REQUESTS = int(os.environ.get("VIDEOPICK_BENCH_VOD_REQUESTS", "1500"))
ROUNDS = 5
SEGMENT = bytes(range(256)) * 256  # 64 KiB: read in one go, like most segments' ranges
PATH = "/vod/bench-video/360p/seg_00000.m4s"


def _client(store: LocalStore, gone: DeletedVideos | None) -> httpx.AsyncClient:
    state: dict[str, Any] = {VOD_STATE_KEY: store}
    if gone is not None:
        state[GONE_STATE_KEY] = gone
    app = Litestar(
        route_handlers=routers, exception_handlers=exception_handlers(), state=State(state)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=cast(Any, app)), base_url="http://b")


async def test_the_check_costs_little(
    local_store: LocalStore, db_engine: AsyncEngine, database_url: str
) -> None:
    await local_store.put(PATH.lstrip("/"), SEGMENT)
    async with db_engine.begin() as conn:
        await conn.execute(
            VIDEOS.insert().values(
                video_id="bench-video", status="ready", sort_at=dt.datetime.now(dt.UTC)
            )
        )
    sessions = session_factory(db_engine)
    gates: dict[str, DeletedVideos | None] = {
        "none": None,
        "ours": DeletedVideos(sessions),
        "peer": DeletedVideos(sessions, recheck_s=0.0),
    }
    clients = {name: _client(local_store, gate) for name, gate in gates.items()}
    spent = dict.fromkeys(gates, 0.0)
    per_round = max(1, REQUESTS // ROUNDS)
    try:
        for client in clients.values():  # warm up: imports, first connections
            assert (await client.get(PATH)).status_code == 200
        for _ in range(ROUNDS):
            for name, client in clients.items():
                started = time.perf_counter()
                for _ in range(per_round):
                    response = await client.get(PATH)
                    assert response.status_code == 200
                spent[name] += time.perf_counter() - started
    finally:
        for client in clients.values():
            await client.aclose()

    total = per_round * ROUNDS
    backend = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    print(f"\nVOD segment GET ({len(SEGMENT) // 1024} KiB), catalog on {backend}, {total} each")
    print(f"{'variant':<6} {'req/s':>9} {'µs/req':>9} {'queries':>8} {'× none':>7}")
    for name, gate in gates.items():
        micros = spent[name] / total * 1e6
        queries = gate.queries if gate is not None else 0
        ratio = spent[name] / spent["none"]
        print(f"{name:<6} {total / spent[name]:>9.0f} {micros:>9.0f} {queries:>8} {ratio:>7.2f}")
    print(f"ours / peer time per request: {spent['ours'] / spent['peer']:.2f}")
    ours, peer = gates["ours"], gates["peer"]
    assert ours is not None
    assert peer is not None
    assert peer.queries >= total  # the naive check asks every time
    assert ours.queries < peer.queries
