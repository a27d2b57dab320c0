"""The database layer on both backends: migrations, engine settings, unavailability."""

from __future__ import annotations

import asyncio
import importlib
import socket
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

import common.idempotency  # noqa: F401 - registers its model on Base.metadata
from common.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    Base,
    DatabaseUnavailable,
    alembic_config,
    create_engine,
    downgrade,
    migrate,
    normalize_url,
    ping,
    session_factory,
)
from tests.fixtures.postgres import _create_database, _drop_database

pytestmark = pytest.mark.integration

SHARED_TABLES = {"processed_events", "projection_checkpoints"}
DEADLINE_S = 15.0


def _schema(conn: Connection) -> dict[str, Any]:
    """What must match across backends: names, nullability, keys and indexes (not types)."""
    insp = inspect(conn)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        pk = insp.get_pk_constraint(table)
        out[table] = {
            "columns": [(c["name"], c["nullable"]) for c in insp.get_columns(table)],
            "pk": (pk["name"], tuple(pk["constrained_columns"])),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
            "fks": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
        }
    # alembic's own bookkeeping table is named by alembic, not by our convention.
    out.pop("alembic_version", None)
    return out


async def _inspect(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema)
    finally:
        await engine.dispose()


async def _current_heads(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(
                await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
            )
    finally:
        await engine.dispose()


def _script_heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _closed_port() -> int:
    """A port nothing listens on (bound then released; connects get refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- migrations ----------------------------------------------------------------------


async def test_upgrade_creates_the_shared_tables(empty_database_url: str) -> None:
    assert await _inspect(empty_database_url) == {}
    await migrate(empty_database_url)

    schema = await _inspect(empty_database_url)
    assert set(schema) >= SHARED_TABLES
    assert schema["processed_events"]["pk"] == ("pk_processed_events", ("consumer", "event_id"))
    assert schema["processed_events"]["columns"] == [
        ("consumer", False),
        ("event_id", False),
        ("processed_at", False),
    ]
    assert schema["projection_checkpoints"]["pk"] == ("pk_projection_checkpoints", ("name",))
    assert [c for c, _ in schema["projection_checkpoints"]["columns"]] == [
        "name",
        "stream",
        "last_seq",
        "updated_at",
    ]
    assert await _current_heads(empty_database_url) == _script_heads()


async def test_timestamps_keep_their_time_zone_on_postgresql(postgres_url: str) -> None:
    url = await _create_database(postgres_url)
    try:
        await migrate(url)
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT table_name, column_name, data_type FROM information_schema.columns"
                        " WHERE column_name IN ('processed_at', 'updated_at', 'last_seq')"
                        " ORDER BY table_name, column_name"
                    )
                )
                types = {(r.table_name, r.column_name): r.data_type for r in rows}
        finally:
            await engine.dispose()
    finally:
        await _drop_database(postgres_url, url)
    assert types[("processed_events", "processed_at")] == "timestamp with time zone"
    assert types[("projection_checkpoints", "updated_at")] == "timestamp with time zone"
    assert types[("projection_checkpoints", "last_seq")] == "bigint"


async def test_both_backends_get_the_same_schema(postgres_url: str, tmp_path: Path) -> None:
    """Every revision (ours and the components'), portable: same names, keys, indexes."""
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'same.db'}"
    pg_url = await _create_database(postgres_url)
    try:
        await asyncio.gather(migrate(sqlite_url), migrate(pg_url))
        sqlite_schema, pg_schema = await asyncio.gather(_inspect(sqlite_url), _inspect(pg_url))
    finally:
        await _drop_database(postgres_url, pg_url)
    assert sqlite_schema == pg_schema


async def test_downgrade_to_base_then_upgrade_again(database_url: str) -> None:
    await downgrade(database_url, "base")
    assert await _inspect(database_url) == {}
    assert await _current_heads(database_url) == set()

    await migrate(database_url)
    assert set(await _inspect(database_url)) >= SHARED_TABLES
    assert await _current_heads(database_url) == _script_heads()


async def test_migrate_is_idempotent_and_safe_to_run_concurrently(
    empty_database_url: str,
) -> None:
    # N replicas starting at once all call migrate(): the lock makes them take turns.
    await asyncio.gather(*(migrate(empty_database_url) for _ in range(3)))
    await migrate(empty_database_url)
    assert set(await _inspect(empty_database_url)) >= SHARED_TABLES
    assert await _current_heads(empty_database_url) == _script_heads()


# Every component's models, so the check does not depend on which tests ran first.
MODEL_MODULES = (
    "common.idempotency",
    "gateway.auth.models",
    "gateway.channels.models",
    "gateway.tus.models",
    "gateway.projections.models",
    "chat.models",
    "ingest.keys",
    "uploader.models",
    "transcoder.jobs",
)


async def test_models_match_the_hand_written_migrations(db_engine: AsyncEngine) -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    known = set(Base.metadata.tables)

    def include(obj: Any, name: str | None, kind: str, _reflected: bool, _other: Any) -> bool:
        # Only the models imported here; other components check their own tables.
        table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table is None or table in known

    def diff(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(ctx, Base.metadata))

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_sqlite_engine_settings(tmp_path: Path) -> None:
    path = tmp_path / "made" / "on" / "demand" / "videopick.db"
    engine = create_engine(f"sqlite:///{path}")  # plain sqlite:// gets the async driver
    try:
        async with engine.connect() as conn:
            journal = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            fks = (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    finally:
        await engine.dispose()
    assert path.exists()
    assert (journal, fks) == ("wal", 1)
    assert busy == SQLITE_BUSY_TIMEOUT_MS


def test_unsupported_database_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        create_engine("mysql://u@localhost/db")
    with pytest.raises(ValueError, match="cannot parse"):
        create_engine("not a url")
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"


async def test_sessions_keep_objects_readable_after_commit(db_engine: AsyncEngine) -> None:
    from common.idempotency import ProcessedEvent

    sessions = session_factory(db_engine)
    async with sessions.begin() as session:
        row = ProcessedEvent(consumer="c", event_id="e")
        session.add(row)
    # expire_on_commit=False: no lazy reload (which async code cannot do implicitly).
    assert row.event_id == "e"
    assert row.processed_at.tzinfo is not None


# --- readiness and unavailability -----------------------------------------------------


async def test_ping_succeeds_on_a_live_database(db_engine: AsyncEngine) -> None:
    await ping(db_engine)


async def test_refused_port_is_unavailable_everywhere() -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/videopick"
    engine = create_engine(url)
    try:
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(DatabaseUnavailable, match="cannot connect"):
                await ping(engine)
            with pytest.raises(DatabaseUnavailable):
                async with session_factory(engine)() as session:
                    await session.execute(text("SELECT 1"))
            with pytest.raises(DatabaseUnavailable):
                await migrate(url)
    finally:
        await engine.dispose()


async def test_unknown_database_is_unavailable(postgres_url: str) -> None:
    url = normalize_url(postgres_url).set(database="no_such_database")
    engine = create_engine(url)
    try:
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(DatabaseUnavailable, match="no_such_database"):
                await ping(engine)
    finally:
        await engine.dispose()


async def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder-not-a-file"
    folder.mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{folder}")
    try:
        with pytest.raises(DatabaseUnavailable, match="unable to open"):
            await ping(engine)
    finally:
        await engine.dispose()


async def _wait_until_gone(admin: AsyncEngine, pid: int) -> None:
    """Poll, with a deadline, until the terminated backend has left pg_stat_activity."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            async with admin.connect() as conn:
                alive = (
                    await conn.execute(
                        text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                        {"pid": pid},
                    )
                ).scalar_one()
            if alive == 0:
                return
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_dropped_connections_are_replaced_or_reported(
    db_engine: AsyncEngine, database_url: str
) -> None:
    admin = create_engine(database_url)
    try:
        # 1. A pooled, idle connection the server killed: pre-ping replaces it unseen.
        async with db_engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await _wait_until_gone(admin, pid)
        await ping(db_engine)

        # 2. Killed while in use: the caller gets DatabaseUnavailable (→ 503), not a 500.
        async with db_engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with admin.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await _wait_until_gone(admin, pid)
            with pytest.raises(DatabaseUnavailable, match="connection lost"):
                await conn.execute(text("SELECT 1"))
        await ping(db_engine)  # and the pool recovers on its own
    finally:
        await admin.dispose()


async def test_integrity_errors_are_not_unavailability(db_engine: AsyncEngine) -> None:
    """Only connection trouble becomes DatabaseUnavailable; a bad statement stays a bug."""
    async with db_engine.connect() as conn:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the type is the assertion
            await conn.execute(text("SELECT * FROM no_such_table"))
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert isinstance(caught.value, DBAPIError)  # ProgrammingError / OperationalError
