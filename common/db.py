"""The database layer every component shares: engine, sessions, ``Base``, migrations.

PostgreSQL (asyncpg) in production, SQLite (aiosqlite) as the embedded default; the
same code and the same hand-written migrations run on both.

Errors::

    Exception
     └── DatabaseUnavailable   cannot connect, or the connection died mid-use (→ HTTP 503)

Anything else (integrity errors, bad SQL) stays SQLAlchemy's own exception.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from sqlalchemy import DateTime, Dialect, MetaData, event, text
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "DatabaseUnavailable",
    "UtcDateTime",
    "alembic_config",
    "create_engine",
    "downgrade",
    "migrate",
    "normalize_url",
    "ping",
    "session_factory",
]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# Deterministic constraint names: SQLite's batch migrations can only drop or alter a
# constraint it can name, and identical names keep the two backends' schemas the same.
NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# How long a SQLite writer waits for another writer's lock before "database is locked".
# Component processes share one file under `make run`; 15 s rides out a slow commit.
SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
# asyncpg waits 60 s for a dead host by default; a readiness probe must answer sooner.
CONNECT_TIMEOUT_S: Final = 10.0
PING_TIMEOUT_S: Final = 5.0
# Serializes concurrent `migrate()` calls (N replicas starting at once) on PostgreSQL.
# Any constant bigint works; this one is "videopic" in ASCII.
_MIGRATION_LOCK_KEY: Final = 0x766964656F706963


class DatabaseUnavailable(Exception):  # noqa: N818 - the name the gateway maps to 503
    """The database cannot be reached, or the connection broke while in use."""


class Base(DeclarativeBase):
    """Declarative base for every component's ORM models (tables prefixed by component)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that returns aware UTC datetimes on both backends.

    SQLite has no time zone type and hands back naive datetimes; storing UTC and
    re-attaching it on the way out keeps the two backends interchangeable. Naive input
    is refused: a guessed time zone is a silent bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def normalize_url(url: str | URL) -> URL:
    """Parse ``url`` and pick the async driver for a plain ``postgresql://`` or ``sqlite://``.

    Operators paste URLs from other tools; anything we cannot run on is refused here
    with a clear message rather than deep inside SQLAlchemy.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"cannot parse database URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(
        f"unsupported database {parsed.drivername!r}: use postgresql+asyncpg:// or "
        "sqlite+aiosqlite:///path"
    )


def _is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None  # in-memory, or a URI the caller manages
    return Path(database)


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    application_name: str = "videopick",
    echo: bool = False,
    pre_ping: bool = True,
) -> AsyncEngine:
    """Build the one engine a process uses. Cheap: nothing connects until first use.

    ``pre_ping=False``: no round trip at each checkout; for a caller whose failed
    transaction is simply retried (a redelivered event), so a dropped connection costs
    one retry instead of a ping on every transaction.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if _is_sqlite(parsed):
        path = _sqlite_file(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(
            pool_size=pool_size,
            max_overflow=max_overflow,
            # A connection the server (or a failover) dropped is replaced at checkout
            # instead of failing the first request that draws it.
            pool_pre_ping=pre_ping,
            # Recycle below the usual 1 h idle cut of proxies and load balancers.
            pool_recycle=1800,
            pool_timeout=CONNECT_TIMEOUT_S,
            connect_args={
                "timeout": CONNECT_TIMEOUT_S,
                "server_settings": {"application_name": application_name},
            },
        )
    engine = create_async_engine(parsed, **kwargs)
    _install_events(engine, sqlite=_is_sqlite(parsed))
    return engine


def _install_events(engine: AsyncEngine, *, sqlite: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "do_connect")
    def _connect(
        dialect: Dialect, _rec: ConnectionPoolEntry, cargs: tuple[Any, ...], cparams: dict[str, Any]
    ) -> Any:
        # asyncpg raises plain OSError / its own errors on connect, which never reach
        # "handle_error"; translate every connect failure here, in one place.
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc

    @event.listens_for(sync_engine, "handle_error")
    def _on_error(ctx: ExceptionContext) -> None:
        # A failed pre-ping is the pool's business: it discards that connection and
        # opens a new one (whose failure, if any, do_connect above reports).
        # A cancelled query (CancelledError is a BaseException) also looks like a lost
        # connection to SQLAlchemy; it must stay a cancellation, or shutdowns hang in
        # retry loops that catch DatabaseUnavailable.
        if (
            ctx.is_disconnect
            and not ctx.is_pre_ping
            and isinstance(ctx.original_exception, Exception)
        ):
            raise DatabaseUnavailable(
                f"database connection lost: {ctx.original_exception}"
            ) from ctx.original_exception

    if sqlite:

        @event.listens_for(sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _rec: ConnectionPoolEntry) -> None:
            cursor = dbapi_connection.cursor()
            try:
                # WAL: readers never block the writer, and component processes share
                # the file. synchronous stays FULL (the default): an acknowledged
                # commit must survive a power cut.
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
                # Off by default in SQLite, for backward compatibility only.
                cursor.execute("PRAGMA foreign_keys=ON")
            finally:
                cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, without a lazy
    # reload that async code cannot do implicitly.
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Readiness: one round trip within ``PING_TIMEOUT_S``, or :class:`DatabaseUnavailable`."""
    try:
        async with asyncio.timeout(PING_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError as exc:
        raise DatabaseUnavailable(f"database did not answer within {PING_TIMEOUT_S} s") from exc


# --- migrations -------------------------------------------------------------------


def alembic_config(url: str | URL | None = None) -> Any:
    """An ``alembic.config.Config`` built in code: no ``alembic.ini`` at runtime.

    Typed ``Any`` because alembic is imported lazily (component processes that never
    migrate do not load it).
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # render_as_string keeps the password; "%" must be doubled for configparser.
        rendered = normalize_url(url).render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


async def migrate(url: str | URL) -> None:
    """Bring the schema up to date (``alembic upgrade heads``). Safe to run concurrently.

    ``heads``, not ``head``: components develop their migrations on their own branches
    off ``0001_foundation``; one head or several, every branch is applied.
    """
    from alembic import command

    await _run_alembic(url, lambda cfg: command.upgrade(cfg, "heads"))


async def downgrade(url: str | URL, revision: str) -> None:
    """``alembic downgrade <revision>`` (``"base"`` drops everything). Operators and tests."""
    from alembic import command

    await _run_alembic(url, lambda cfg: command.downgrade(cfg, revision))


# alembic keeps the running command's context in module globals (`alembic.context`):
# two commands at once in one process corrupt each other, so they take turns. The
# database lock below covers other processes.
_ALEMBIC_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _alembic_lock() -> asyncio.Lock:
    return _ALEMBIC_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def _run_alembic(url: str | URL, run: Callable[[Any], None]) -> None:
    """Run an alembic command on one connection, inside one locked transaction.

    The connection is handed to ``env.py`` through ``config.attributes`` (the alembic
    cookbook's connection sharing), so the engine, its pragmas and error translation
    are the same ones the application uses.
    """
    parsed = normalize_url(url)
    engine = create_engine(
        parsed, pool_size=1, max_overflow=0, application_name="videopick-migrate"
    )
    try:
        async with _alembic_lock(), engine.connect() as conn:
            if _is_sqlite(parsed):
                await _sqlite_migration(conn, run, parsed)
            else:
                async with conn.begin():
                    # Transaction-scoped: released at commit or when the session dies.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                    await conn.run_sync(_alembic_on_connection, run, parsed)
    finally:
        await engine.dispose()


async def _sqlite_migration(conn: AsyncConnection, run: Callable[[Any], None], url: URL) -> None:
    # Batch migrations rebuild tables (create, copy, drop, rename); with foreign keys
    # on, dropping a referenced table cascades or fails. The pragma is a no-op inside a
    # transaction, so switch it off first (this connection is discarded afterwards) and
    # check the keys once before committing, as SQLite's ALTER TABLE guide says.
    await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    # Python's sqlite3 issues no BEGIN before DDL; without one each CREATE commits on
    # its own. IMMEDIATE takes the write lock now, serializing concurrent migrators.
    await conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        await conn.run_sync(_alembic_on_connection, run, url)
        broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
        if broken:
            raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
    except BaseException:
        await conn.rollback()
        raise
    await conn.commit()


def _alembic_on_connection(sync_conn: Connection, run: Callable[[Any], None], url: URL) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = sync_conn
    run(cfg)
