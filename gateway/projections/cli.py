"""``videopick projections …``: the gateway's catalog, rebuilt from the event log.

``rebuild`` empties the catalog tables and their checkpoints and replays every stream
from its start (``gateway.projections.catalog.rebuild``). Running gateways need not be
stopped: their projectors see the checkpoint go back and help replay, and the
checkpoint lock still applies each event once. ``status`` shows how far the catalog
is behind the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
import nats
import typer
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, migrate, session_factory
from common.settings import Settings, get_settings

app = typer.Typer(
    name="projections",
    help="The gateway's read models, folded from the event log.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS server (default: VIDEOPICK_NATS_URL / settings)."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Database (default: VIDEOPICK_DATABASE_URL / settings)."),
]


def _settings(nats_url: str | None, database_url: str | None) -> Settings:
    settings = get_settings()
    changes = {k: v for k, v in (("nats_url", nats_url), ("database_url", database_url)) if v}
    return msgspec.structs.replace(settings, **changes) if changes else settings


@contextlib.asynccontextmanager
async def _connected(
    settings: Settings,
) -> AsyncIterator[tuple[JetStreamContext, async_sessionmaker[AsyncSession]]]:
    # An operator command fails fast instead of retrying a dead server for minutes.
    client = await nats.connect(
        settings.nats_servers,
        name="videopick-projections-cli",
        allow_reconnect=False,
        connect_timeout=5,
        max_reconnect_attempts=1,
    )
    engine = create_engine(settings.resolved_database_url, application_name="videopick-cli")
    try:
        yield client.jetstream(), session_factory(engine)
    finally:
        await engine.dispose()
        await client.close()


async def _rebuild(settings: Settings, batch_size: int) -> None:
    from gateway.projections.catalog import rebuild

    await migrate(settings.resolved_database_url)  # the tables may have been dropped
    async with _connected(settings) as (js, sessions):
        report = await rebuild(js, sessions, batch_size=batch_size)
    console.print(
        f"catalog rebuilt: {report.events} events read, {report.applied} applied, "
        f"{report.seconds:.2f} s ({report.events_per_s:,.0f} events/s)"
    )


async def _status(settings: Settings) -> None:
    from gateway.projections._checkpoints import read_checkpoints
    from gateway.projections.catalog import FEEDS, PROJECTION

    async with _connected(settings) as (js, sessions):
        async with sessions() as session:
            positions = await read_checkpoints(session, PROJECTION, [f.stream for f in FEEDS])
        table = Table("stream", "events folded", "checkpoint", "stream last seq", "behind")
        for feed in FEEDS:
            info = await js.stream_info(feed.stream)
            last = info.state.last_seq
            behind = "-" if positions[feed.stream] >= last else str(last - positions[feed.stream])
            table.add_row(
                feed.stream,
                " ".join(p.rstrip(".") for p in feed.prefixes),
                str(positions[feed.stream]),
                str(last),
                behind,
            )
    Console().print(table)


@app.command()
def rebuild(
    nats_url: NatsUrl = None,
    database_url: DatabaseUrl = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=65_536, help="Events per transaction.")
    ] = 4096,
) -> None:
    """Empty the catalog and replay the log into it (same rows as before, by design)."""
    asyncio.run(_rebuild(_settings(nats_url, database_url), batch_size))


@app.command()
def status(nats_url: NatsUrl = None, database_url: DatabaseUrl = None) -> None:
    """Each stream's checkpoint against its last sequence."""
    asyncio.run(_status(_settings(nats_url, database_url)))
