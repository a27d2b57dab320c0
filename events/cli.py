"""``videopick events …``: the operator's view of the event log.

Commands talk to NATS at ``VIDEOPICK_NATS_URL`` (``--nats-url`` overrides). Each runs
its own event loop (``asyncio.run``); Ctrl-C ends a ``tail`` and deletes its consumer.
Tables and progress go to stderr/stdout through rich; ``tail`` and a printing
``replay`` write one plain line per event to stdout, so they pipe into grep or jq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import nats
import typer
from nats.aio.client import Client
from nats.js import JetStreamContext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from common.settings import Settings, get_settings
from events.asyncapi import build_asyncapi, build_component_brokers, write_asyncapi
from events.catalog import decode_event
from events.deadletters import DeadLetter, RedriveError, redrive_one, select_dead_letters
from events.deadletters import list_dead_letters as load_dead_letters
from events.inspect import StreamSummary, collect
from events.replay import (
    ReplayError,
    StoredReader,
    StoredRecord,
    map_subject,
    new_replay_id,
    parse_time,
    republish,
    streams_of,
)
from events.streams import init_streams

app = typer.Typer(
    name="events",
    help="Inspect, tail and replay the JetStream event log.",
    no_args_is_help=True,
    add_completion=False,
)
dead_letters_app = typer.Typer(help="Messages consumers gave up on.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")

T = TypeVar("T")

NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS server (default: VIDEOPICK_NATS_URL / settings)."),
]


def _settings(nats_url: str | None) -> Settings:
    settings = get_settings()
    return msgspec.structs.replace(settings, nats_url=nats_url) if nats_url else settings


@contextlib.asynccontextmanager
async def _connect(settings: Settings) -> AsyncIterator[JetStreamContext]:
    url = settings.resolved_nats_url
    try:
        # An operator command fails fast: nats-py retries a dead server for two minutes
        # by default even without reconnects (60 attempts, 2 s apart).
        client: Client = await nats.connect(
            settings.nats_servers,
            name="videopick-events-cli",
            allow_reconnect=False,
            connect_timeout=5,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=_quiet,
        )
    except (OSError, nats.errors.Error) as exc:
        raise _fail(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from exc
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def _quiet(_error: Exception) -> None:
    """Connection errors are reported once, by _connect, not logged per attempt."""


def _run(settings: Settings, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _connect(settings) as js:
            return await work(js)

    try:
        return asyncio.run(main())
    except (ReplayError, RedriveError) as exc:
        raise _fail(str(exc)) from exc


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


def _time(value: datetime | None, timespec: str = "seconds") -> str:
    return value.isoformat(timespec=timespec).replace("+00:00", "Z") if value else "-"


# --- init / streams ------------------------------------------------------------------


@app.command()
def init(nats_url: NatsUrl = None) -> None:
    """Create the event streams, or update them to the declared limits."""
    settings = _settings(nats_url)
    results = _run(settings, lambda js: init_streams(js, settings))
    table = Table("stream", "action", title=f"JetStream at {settings.resolved_nats_url}")
    for name, action in results:
        table.add_row(name, action)
    Console().print(table)


@app.command()
def streams(
    nats_url: NatsUrl = None,
    readers: Annotated[
        bool, typer.Option("--readers", help="Also list running tail/replay consumers.")
    ] = False,
) -> None:
    """Streams (messages, bytes, first/last) and their consumers (pending, lag)."""
    summaries = _run(_settings(nats_url), lambda js: collect(js, include_readers=readers))
    console = Console()
    console.print(_streams_table(summaries))
    console.print(_consumers_table(summaries))


def _streams_table(summaries: list[StreamSummary]) -> Table:
    table = Table(title="streams")
    for column in ("stream", "messages", "bytes", "first seq", "last seq"):
        table.add_column(column, justify="left" if column == "stream" else "right")
    table.add_column("first time")
    table.add_column("last time")
    for s in summaries:
        table.add_row(
            s.name,
            f"{s.messages:,}",
            f"{s.bytes:,}",
            str(s.first_seq),
            str(s.last_seq),
            _time(s.first_time),
            _time(s.last_time),
        )
    return table


def _consumers_table(summaries: list[StreamSummary]) -> Table:
    table = Table(title="consumers")
    table.add_column("stream")
    table.add_column("consumer")
    table.add_column("filter")
    for column in ("pending", "ack pending", "redelivered", "lag"):
        table.add_column(column, justify="right")
    for s in summaries:
        for c in s.consumers:
            table.add_row(
                s.name,
                c.name,
                c.filter,
                f"{c.pending:,}",
                f"{c.ack_pending:,}",
                f"{c.redelivered:,}",
                f"{c.lag:,}",
            )
    return table


# --- tail / replay ---------------------------------------------------------------------


def event_line(record: StoredRecord) -> str:
    """``seq time type key {json}``: one line per stored message (time: when stored)."""
    stored = _time(record.time, "milliseconds")
    try:
        event = decode_event(record.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        preview = record.data[:200].decode("utf-8", "replace")
        return f"{record.seq} {stored} ? {record.subject} undecodable ({exc}): {preview!r}"
    key = str(getattr(event, event.key_field, ""))
    body = msgspec.json.encode(event).decode()
    return f"{record.seq} {stored} {event.event_type()} {key} {body}"


def _start_options(from_seq: int | None, since: str | None) -> tuple[int | None, datetime | None]:
    if from_seq is not None and since is not None:
        raise typer.BadParameter("use either --from-seq or --since")
    try:
        return from_seq, parse_time(since) if since is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from exc


FromSeq = Annotated[int | None, typer.Option("--from-seq", min=1, help="First stream sequence.")]
Since = Annotated[
    str | None,
    typer.Option("--since", help="ISO 8601 time (UTC if naive) or an age: 30s, 10m, 2h, 1d."),
]


@app.command()
def tail(
    subject: Annotated[
        str, typer.Argument(help="Subject filter, e.g. 'chat.>' or 'stream.*.abc'.")
    ],
    *,
    from_seq: FromSeq = None,
    since: Since = None,
    new: Annotated[bool, typer.Option("--new", help="Only events stored from now on.")] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Print events as they arrive (by default, only new ones); Ctrl-C stops."""
    start_seq, start_time = _start_options(from_seq, since)
    if new and (start_seq is not None or start_time is not None):
        raise typer.BadParameter("--new excludes --from-seq and --since")
    only_new = start_seq is None and start_time is None

    async def work(js: JetStreamContext) -> None:
        reader = StoredReader(
            js, subject, from_seq=start_seq, since=start_time, new=only_new, follow=True
        )
        seen = 0
        async with reader:
            async for record in reader:
                typer.echo(event_line(record))
                seen += 1
                if count is not None and seen >= count:
                    return

    with contextlib.suppress(KeyboardInterrupt):
        _run(_settings(nats_url), work)


@app.command()
def replay(
    *,
    subject: Annotated[str, typer.Option("--subject", help="Subject filter to replay.")],
    from_seq: FromSeq = None,
    since: Since = None,
    to_seq: Annotated[
        int | None, typer.Option("--to-seq", min=1, help="Last stream sequence (inclusive).")
    ] = None,
    to_subject: Annotated[
        str | None,
        typer.Option(
            "--to-subject",
            help="Republish instead of printing. '{subject}' is replaced by the original "
            "subject ('replay.{subject}', or '{subject}' to republish in place); without "
            "it the value is a prefix: 'replay' → 'replay.<subject>'.",
        ),
    ] = None,
    replay_id: Annotated[
        str | None,
        typer.Option(
            "--replay-id",
            help="Marker in the copies' Nats-Msg-Id (<id>:replay:<marker>). Reuse it to "
            "resume an interrupted replay without duplicates; random by default.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be replayed; publish nothing.")
    ] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Read stored events from a sequence or a time up to now; print or republish them."""
    start_seq, start_time = _start_options(from_seq, since)
    if start_seq is None and start_time is None:
        raise typer.BadParameter("give a start: --from-seq N or --since TIME")
    marker = replay_id or new_replay_id()
    err = Console(stderr=True)

    async def work(js: JetStreamContext) -> None:
        if to_subject is not None and not await streams_of(js, map_subject(to_subject, subject)):
            raise ReplayError(
                f"no stream stores {map_subject(to_subject, subject)!r}: "
                "the replay target must belong to a stream"
            )
        reader = StoredReader(js, subject, from_seq=start_seq, since=start_time, to_seq=to_seq)
        async with reader:
            err.print(
                f"replay {subject} from {reader.stream} up to seq {reader.last_seq}: "
                f"at most {reader.pending:,} events"
                + (f" → {to_subject} (replay id {marker})" if to_subject and not dry_run else "")
            )
            with _progress(err) as progress:
                task = progress.add_task("replay", total=reader.pending or None)

                def advance(_record: StoredRecord) -> None:
                    progress.advance(task)

                if to_subject is not None and not dry_run:
                    stats = await republish(
                        js, reader, to_subject=to_subject, replay_id=marker, on_done=advance
                    )
                    summary = (
                        f"{stats.published:,} republished, "
                        f"{stats.duplicates:,} already there (same replay id)"
                    )
                else:
                    seen = 0
                    async for record in reader:
                        if not dry_run:
                            typer.echo(event_line(record))  # stdout; the bar is on stderr
                        seen += 1
                        advance(record)
                    summary = f"{seen:,} events" + (" would be replayed" if dry_run else "")
                # The start count is an upper bound (--to-seq); end the bar at what came.
                progress.update(task, total=progress.tasks[0].completed)
        err.print(summary)

    _run(_settings(nats_url), work)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,  # no bar in pipes and logs, only the summary
    )


# --- dead letters ----------------------------------------------------------------------

Consumer = Annotated[
    str | None, typer.Option("--consumer", help="Only this consumer's dead letters.")
]


@dead_letters_app.command("list")
def list_dead_letters(consumer: Consumer = None, nats_url: NatsUrl = None) -> None:
    """Dead letters, oldest first: where they came from and why."""
    letters = _run(_settings(nats_url), lambda js: load_dead_letters(js, consumer=consumer))
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("seq", "time", "subject", "stream", "orig seq", "consumer", "deliveries"):
        table.add_column(column)
    table.add_column("error", overflow="fold")
    for d in letters:
        table.add_row(
            str(d.seq),
            _time(d.time),
            d.original_subject,
            d.original_stream,
            str(d.original_seq),
            d.consumer,
            str(d.deliveries),
            d.error,
        )
    Console().print(table)


@dead_letters_app.command("redrive")
def redrive_dead_letters(
    consumer: Consumer = None,
    seq: Annotated[
        int | None, typer.Option("--seq", help="One dead letter, by its sequence.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter (of --consumer).")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Republish dead letters to their original subject, then delete them.

    Choose --seq N (one), --consumer C (all of C's) or --all. Each copy gets the
    Nats-Msg-Id <original id>:redrive:<dead-letter seq>; the dead letter is deleted only
    after JetStream acknowledged the copy.
    """
    console = Console()

    async def work(js: JetStreamContext) -> list[DeadLetter]:
        letters = await select_dead_letters(js, consumer=consumer, seq=seq, all_=all_)
        for letter in letters:
            ack = await redrive_one(js, letter)
            note = " (duplicate: already redriven)" if ack.duplicate else ""
            console.print(
                f"redriven {letter.seq} → {letter.original_subject} "
                f"({ack.stream} seq {ack.seq}){note}",
                markup=False,
            )
        return letters

    letters = _run(_settings(nats_url), work)
    console.print(f"{len(letters)} dead letter(s) redriven")


# --- asyncapi ----------------------------------------------------------------------------


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Write the AsyncAPI document (JSON) of every component's broker."""
    err = Console(stderr=True)
    brokers = build_component_brokers(get_settings(), note=err.print)
    text = write_asyncapi(build_asyncapi(brokers))
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    document = json.loads(text)
    err.print(f"wrote {output}: {len(document.get('channels', {}))} channels")


if __name__ == "__main__":
    app()
