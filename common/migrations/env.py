"""Alembic environment, async on both SQLite (aiosqlite) and PostgreSQL (asyncpg).

Two ways in:

- :func:`common.db.migrate` / :func:`common.db.downgrade` open the connection
  themselves (locked, one transaction) and pass it in ``config.attributes``;
- the CLI (``python -m common.migrations …``) has none, so we open one here.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from common.db import Base, create_engine, normalize_url
from common.settings import get_settings

config = context.config
# Models are not imported: migrations are written by hand. The metadata is only here
# so `op.create_table` picks up the shared constraint naming convention.
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_cli() -> None:
    engine = create_engine(_url(), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    """``--sql``: print the DDL for a DBA instead of running it."""
    url = normalize_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
elif (shared := config.attributes.get("connection")) is not None:
    _run(shared)
else:
    asyncio.run(_run_cli())
