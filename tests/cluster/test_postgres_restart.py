"""Restart PostgreSQL under the cluster: 503 fast while it is down, nothing half-written."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.cluster.conftest import Cluster, wait_for

pytestmark = pytest.mark.cluster

# A request must not hang on a dead database: it gets its 503 within this.
FAIL_FAST_S = 5.0


def _account(name: str) -> dict[str, str]:
    return {"username": name, "email": f"{name}@example.com", "password": f"pw-{name}-horse-1"}


async def test_requests_fail_fast_while_postgres_is_down_and_resume(cluster: Cluster) -> None:
    gateway = cluster.gateways[0]
    async with httpx.AsyncClient(base_url=gateway, timeout=30.0) as http:
        before = _account(f"pgb{uuid.uuid4().hex[:8]}")
        assert (await http.post("/api/v2/auth/register", json=before)).status_code == 201

        await asyncio.to_thread(cluster.servers.postgres.stop, "immediate")
        try:
            during = _account(f"pgd{uuid.uuid4().hex[:8]}")
            for url in cluster.gateways:
                started = time.monotonic()
                refused = await http.post(f"{url}/api/v2/auth/register", json=during)
                elapsed = time.monotonic() - started
                assert refused.status_code == 503, refused.text
                assert refused.headers["content-type"].startswith("application/problem+json")
                assert "Traceback" not in refused.text
                assert elapsed < FAIL_FAST_S, f"{url} took {elapsed:.1f} s to refuse"
                login = await http.post(
                    f"{url}/api/v2/auth/login",
                    json={"login": before["username"], "password": before["password"]},
                )
                assert login.status_code == 503, login.text
                not_ready = await http.get(f"{url}/readyz")
                assert not_ready.status_code == 503
                assert not_ready.json()["checks"]["nats"] == "ok"
        finally:
            await asyncio.to_thread(cluster.servers.postgres.start)

        for url in cluster.gateways:

            async def ready(url: str = url) -> bool:
                return (await http.get(f"{url}/readyz")).status_code == 200

            await wait_for(ready, f"{url} ready again")
        # Nothing half-written: the refused registration left no user behind, so the
        # same name registers now, and the one from before still logs in.
        again = await http.post("/api/v2/auth/register", json=during)
        assert again.status_code == 201, again.text
        login = await http.post(
            "/api/v2/auth/login",
            json={"login": before["username"], "password": before["password"]},
        )
        assert login.status_code == 200, login.text
        # The other gateway and the chat component work again too.
        other = cluster.gateways[1]
        token = again.json()["access_token"]
        wallet = await wait_for(
            lambda: _wallet(http, other, token), "the wallet through the other gateway"
        )
        assert wallet["balance"] == 0


async def _wallet(http: httpx.AsyncClient, url: str, token: str) -> dict[str, int] | None:
    response = await http.get(f"{url}/api/v2/wallet", headers={"Authorization": f"Bearer {token}"})
    return response.json() if response.status_code == 200 else None
