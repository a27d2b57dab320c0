"""Migration 0005_uploads: the ORM models match it on both backends, and it reverses."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway.tus.models  # noqa: F401 - registers the gateway's upload tables
import uploader.models  # noqa: F401 - registers the uploader's table
from common.db import Base, create_engine, downgrade, migrate

pytestmark = pytest.mark.integration

TABLES = {"gateway_uploads", "gateway_upload_status", "uploader_uploads"}


async def test_models_match_the_migration(db_engine: AsyncEngine) -> None:
    def include(obj: Any, name: str | None, kind: str, _reflected: bool, _other: Any) -> bool:
        table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table in TABLES

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(context, Base.metadata))

    async with db_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_the_migration_goes_down_and_up_again(database_url: str) -> None:
    await downgrade(database_url, "0005_uploads@-1")
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert not names & TABLES
        await migrate(database_url)
        async with engine.connect() as conn:
            names = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert names >= TABLES
    finally:
        await engine.dispose()
