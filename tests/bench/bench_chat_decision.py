"""What one chat decision costs the chat worker (chat/pipeline.py, chat/decision_rows.py).

    .venv/bin/pytest -m bench tests/bench/bench_chat_decision.py -s

The pipeline in-process on each database (a throw-away PostgreSQL cluster, SQLite),
200 registered senders in one channel, ``VIDEOPICK_BENCH_CHAT_DECISIONS`` (default 400)
messages decided one at a time (a batch of one: the chat benchmark's usual case), plain
and with effect emoji. Printed per decision: the worker's CPU time, wall time, and the
SQL statements sent (BEGIN and COMMIT not counted).
"""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from chat.models import ChatUserRow
from chat.pipeline import ChatPipeline, Rules
from common.db import session_factory
from tests.integration.chat_helpers import FakeClock, Users

pytestmark = [
    pytest.mark.bench,
    pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True),
]

DECISIONS = int(os.environ.get("VIDEOPICK_BENCH_CHAT_DECISIONS", "400"))
SENDERS = 200
WARM_UP = 50


async def test_cpu_per_decision(db_engine: AsyncEngine) -> None:
    sessions = session_factory(db_engine)
    users = Users()
    async with sessions.begin() as session:
        for n in range(SENDERS):
            session.add(
                ChatUserRow(
                    user_id=f"u{n}",
                    username=f"n{n}",
                    username_key=f"n{n}",
                    stream_id=users.stream if n == 0 else f"c{n}",
                    registered_at=dt.datetime.now(dt.UTC),
                )
            )
    clock = FakeClock()
    pipeline = ChatPipeline(sessions, Rules(max_chars=500, rate_burst=20, rate_per_s=10.0), clock)
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(db_engine.sync_engine, "before_cursor_execute", count)
    rows = []
    for label, suffix in (("plain", ""), ("with emoji", " 🔥🎉")):
        for n in range(WARM_UP):
            await pipeline.decide(users.message(f"u{1 + n % (SENDERS - 1)}", f"warm {n}{suffix}"))
        statements = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(DECISIONS):
            clock.advance(0.01)
            await pipeline.decide(users.message(f"u{1 + n % (SENDERS - 1)}", f"m {n}{suffix}"))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rows.append((label, cpu, wall, statements))
    event.remove(db_engine.sync_engine, "before_cursor_execute", count)
    print(f"\nBENCH chat decision, {db_engine.dialect.name}: {DECISIONS} decisions, one per batch")
    print(f"  {'message':<12}{'CPU ms':>9}{'wall ms':>9}{'statements':>12}")
    for label, cpu, wall, stmts in rows:
        print(
            f"  {label:<12}{cpu / DECISIONS * 1000:>9.2f}{wall / DECISIONS * 1000:>9.2f}"
            f"{stmts / DECISIONS:>12.1f}"
        )
        assert stmts > 0
