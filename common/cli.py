"""The ``videopick`` command: run the platform, operate the event log."""

from __future__ import annotations

import asyncio
import importlib
import runpy
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from common.cluster import DEFAULT_PROCESSES
from common.components import COMPONENTS
from common.logs import configure_logging
from common.settings import SettingsError, get_settings

# Sub-commands that live beside their own code, imported only when one of them runs:
# their imports (NATS, SQLAlchemy, FastStream) took ~1.3 s of every `videopick` call.
_MOUNTS = {
    "events": ("events.cli", "The event log: streams, tail, replay, dead letters."),
    "projections": ("gateway.projections.cli", "Rebuild the gateway's catalog from the log."),
}


class _Unloaded(TyperCommand):
    """A mount's stand-in: its name and help, for listings and "did you mean"."""


class _LazyMounts(TyperGroup):
    """Listings see the stand-ins; running a mount replaces its stand-in with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, (_, help_text) in _MOUNTS.items():
            self.commands[name] = _Unloaded(name, help=help_text)

    # Typed Any where Typer's own (vendored, private) click types would go.
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _Unloaded) and name is not None:
            module, help_text = _MOUNTS[name]
            command = typer.main.get_command(importlib.import_module(module).app)
            command.name, command.help = name, help_text
            self.commands[name] = command
        return name, command, rest


app = typer.Typer(
    name="videopick",
    help="VideoPick: self-hosted live streaming and video on demand.",
    no_args_is_help=True,
    cls=_LazyMounts,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def up(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="start only these components")
    ] = None,
) -> None:
    """Start NATS, the database and every component; Ctrl-C stops it all."""
    from common.supervisor import Supervisor

    settings = get_settings()
    configure_logging("supervisor", settings.log_level, settings.log_json)
    raise typer.Exit(asyncio.run(Supervisor(settings, only=only).run()))


@app.command()
def cluster(
    root: Annotated[Path, typer.Option(help="where the servers keep their data")] = Path(
        "data/cluster"
    ),
    processes: Annotated[str, typer.Option(help="processes per component")] = DEFAULT_PROCESSES,
    http_port: Annotated[int, typer.Option(help="first gateway's port; the next +1")] = 8080,
) -> None:
    """The production shape here: 3 clustered NATS, PostgreSQL, MinIO, N of every component."""
    from common.cluster import run_cluster

    configure_logging("cluster", "INFO", False)
    raise typer.Exit(run_cluster(root, processes=processes, http_port=http_port))


@app.command()
def run(component: Annotated[str, typer.Argument(help="|".join(COMPONENTS))]) -> None:
    """Run one component in this process (what `up` starts for each)."""
    if component not in COMPONENTS:
        raise typer.BadParameter(f"unknown component {component!r}; one of {COMPONENTS}")
    runpy.run_module(component, run_name="__main__", alter_sys=True)


@app.command()
def demo(
    gateway: Annotated[str, typer.Option(help="the platform's URL")] = "http://localhost:8080",
    rtmp: Annotated[
        str | None, typer.Option(help="RTMP ingest, rtmp://HOST:PORT/live (default: the gateway's)")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="seconds of live, then stop (default: until Ctrl-C)")
    ] = None,
    upload: Annotated[bool, typer.Option(help="also upload a sample clip")] = True,
) -> None:
    """Go live with a synthetic stream and upload a sample clip, against a running platform."""
    from common.demo import DemoOptions, run_demo

    options = DemoOptions(gateway=gateway, rtmp=rtmp, duration_s=duration, upload=upload)
    raise typer.Exit(run_demo(options))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (SQLite by default, PostgreSQL via VIDEOPICK_DATABASE_URL)."""
    from common.db import migrate

    settings = get_settings()
    configure_logging("db", settings.log_level, settings.log_json)
    asyncio.run(migrate(settings.resolved_database_url))
    typer.echo("database is at the latest revision")


def main() -> None:
    try:
        app()
    except SettingsError as exc:
        typer.secho(f"configuration error: {exc}", err=True, fg="red")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
