"""``videopick events …`` through typer's CliRunner, against the test nats-server.

Each command runs ``asyncio.run`` itself, so it is invoked in a worker thread while the
test's own loop keeps serving brokers and publishes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from typer.testing import CliRunner, Result

from common.settings import Settings, get_settings
from events.broker import create_broker
from events.catalog import EVENTS_BY_TYPE, StatsViewers, encode_event
from events.cli import app
from events.consumer import RetryPolicy, durable_subscriber
from events.errors import PermanentError
from events.replay import READER_PREFIX
from events.streams import ALL_STREAMS, RETIRED_CONSUMERS
from tests.unit.test_events_catalog import sample_event

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0
WIDE = {"COLUMNS": "220"}  # rich wraps tables to the terminal width


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's settings come from the environment, as in production."""
    monkeypatch.setenv("VIDEOPICK_NATS_URL", settings.resolved_nats_url)
    monkeypatch.setenv("VIDEOPICK_EVENTS_MAX_BYTES", str(settings.events_max_bytes))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def invoke(*args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args), env=WIDE))


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the rich table row whose first cell is ``first_cell``."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{output}")


async def publish_viewers(
    js: JetStreamContext, count: int, *, start: int = 0
) -> list[StatsViewers]:
    events = [
        sample_event(StatsViewers, variant=i, stream_id=f"s{i % 2}")
        for i in range(start, start + count)
    ]
    for event in events:
        await js.publish(
            event.subject(), encode_event(event), headers={"Nats-Msg-Id": event.event_id}
        )
    return events


async def wait_until_reader_exists(js: JetStreamContext, stream: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not any(c.name.startswith(READER_PREFIX) for c in await js.consumers_info(stream)):
        assert time.monotonic() < deadline, "tail never created its consumer"
        await asyncio.sleep(0.05)


# --- init / streams ----------------------------------------------------------------------


async def test_init_creates_missing_streams_and_updates_the_rest(
    cli_env: None, event_streams: JetStreamContext, settings: Settings
) -> None:
    await event_streams.delete_stream("STATS")
    result = ok(await invoke("init"))  # the URL comes from VIDEOPICK_NATS_URL
    for stream in ALL_STREAMS:
        assert table_row(result.stdout, stream.name)[1] == (
            "created" if stream.name == "STATS" else "updated"
        )
    info = await event_streams.stream_info("STATS")
    assert info.config.max_bytes == settings.events_max_bytes


async def test_init_removes_retired_consumers_once(
    cli_env: None, event_streams: JetStreamContext
) -> None:
    [(stream, durable)] = RETIRED_CONSUMERS
    await event_streams.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject="chunk.>"
        ),
    )
    result = ok(await invoke("init"))
    assert table_row(result.stdout, f"{stream}/{durable}")[1] == "retired consumer removed"
    names = {consumer.name for consumer in await event_streams.consumers_info(stream)}
    assert durable not in names
    again = ok(await invoke("init"))  # nothing left to remove: no row, no error
    assert f"{stream}/{durable}" not in again.stdout


async def test_streams_shows_streams_and_consumers_with_pending_counts(
    cli_env: None, event_streams: JetStreamContext
) -> None:
    await event_streams.add_consumer(
        "STATS",
        ConsumerConfig(
            durable_name="cli-pending",
            ack_policy=AckPolicy.EXPLICIT,
            filter_subject="stats.viewers.*",
        ),
    )
    await publish_viewers(event_streams, 4)
    sub = await event_streams.pull_subscribe_bind("cli-pending", stream="STATS")
    [_unacked] = await sub.fetch(1, timeout=5)  # delivered, never acknowledged
    await sub.unsubscribe()

    result = ok(await invoke("streams"))
    stats = table_row(result.stdout, "STATS")
    assert stats[1:5] == ["4", stats[2], "1", "4"]  # messages, bytes, first, last seq
    consumer = _consumer_row(result.stdout, "cli-pending")
    # pending 3, ack pending 1, redelivered 0, lag 4 - 1 = 3
    assert consumer[2:] == ["stats.viewers.*", "3", "1", "0", "3"]


def _consumer_row(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if len(cells) > 1 and cells[1] == name:
            return cells
    raise AssertionError(f"no consumer {name!r} in:\n{output}")


# --- tail -------------------------------------------------------------------------------


async def test_tail_prints_one_line_per_event(
    cli_env: None, event_streams: JetStreamContext
) -> None:
    events = await publish_viewers(event_streams, 5)
    await event_streams.publish("stats.viewers.junk", b"\xff not an event")

    result = ok(await invoke("tail", "stats.>", "--from-seq", "2", "--count", "5"))
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    for seq, (line, event) in enumerate(zip(lines[:4], events[1:], strict=True), start=2):
        number, _time, event_type, key, body = line.split(" ", 4)
        assert (int(number), event_type, key) == (seq, "stats.viewers", event.stream_id)
        assert json.loads(body)["event_id"] == event.event_id
    assert lines[4].startswith("6 ")
    assert "undecodable" in lines[4]


async def test_tail_new_follows_events_published_after_it_started(
    cli_env: None, event_streams: JetStreamContext
) -> None:
    await publish_viewers(event_streams, 3)  # history tail --new must not print
    tail = asyncio.create_task(invoke("tail", "stats.viewers.*", "--new", "--count", "1"))
    await wait_until_reader_exists(event_streams, "STATS")
    [late] = await publish_viewers(event_streams, 1, start=100)

    result = ok(await asyncio.wait_for(tail, DEADLINE_S))
    [line] = result.stdout.splitlines()
    assert line.startswith("4 ")
    assert late.event_id in line
    # Its consumer went away with it.
    assert await event_streams.consumers_info("STATS") == []


# --- replay ----------------------------------------------------------------------------


async def test_replay_prints_counts_and_republishes(
    cli_env: None, event_streams: JetStreamContext
) -> None:
    events = await publish_viewers(event_streams, 10)

    printed = ok(await invoke("replay", "--subject", "stats.viewers.*", "--from-seq", "4"))
    ids = [json.loads(line.split(" ", 4)[4])["event_id"] for line in printed.stdout.splitlines()]
    assert ids == [e.event_id for e in events[3:]]
    assert "7 events" in printed.stderr

    bounded = ok(
        await invoke("replay", "--subject", "stats.viewers.s0", "--since", "1h", "--to-seq", "5")
    )
    assert len(bounded.stdout.splitlines()) == 3  # seqs 1, 3, 5

    dry = ok(
        await invoke(
            "replay", "--subject", "stats.viewers.*", "--since", "1h",
            "--to-subject", "stats.replayed", "--dry-run",
        )
    )  # fmt: skip
    assert "10 events would be replayed" in dry.stderr
    assert (await event_streams.stream_info("STATS")).state.messages == 10

    copied = ok(
        await invoke(
            "replay", "--subject", "stats.viewers.*", "--from-seq", "1",
            "--to-subject", "stats.replayed", "--replay-id", "cli1",
        )
    )  # fmt: skip
    assert "10 republished, 0 already there" in copied.stderr
    again = ok(
        await invoke(
            "replay", "--subject", "stats.viewers.*", "--from-seq", "1",
            "--to-subject", "stats.replayed.{subject}", "--replay-id", "cli1",
        )
    )  # fmt: skip
    assert "0 republished, 10 already there" in again.stderr
    replayed = ok(await invoke("replay", "--subject", "stats.replayed.>", "--from-seq", "1"))
    assert len(replayed.stdout.splitlines()) == 10


async def test_replay_refuses_bad_arguments(cli_env: None, event_streams: JetStreamContext) -> None:
    no_start = await invoke("replay", "--subject", "stats.>")
    assert no_start.exit_code == 2
    assert "give a start" in no_start.output
    bad_time = await invoke("replay", "--subject", "stats.>", "--since", "last tuesday")
    assert bad_time.exit_code == 2
    assert "cannot read time" in bad_time.output
    nowhere = await invoke(
        "replay", "--subject", "stats.>", "--from-seq", "1", "--to-subject", "nowhere"
    )
    assert nowhere.exit_code == 1
    assert "no stream stores" in nowhere.output
    down = await invoke("streams", "--nats-url", "nats://127.0.0.1:9")
    assert down.exit_code == 1
    assert "cannot reach NATS" in down.output


# --- dead letters -------------------------------------------------------------------------


@pytest.fixture
async def broker(settings: Settings, event_streams: JetStreamContext) -> AsyncIterator[NatsBroker]:
    broker = create_broker(settings, name="cli-test")
    yield broker
    await broker.stop()


async def test_dead_letters_list_and_redrive(
    cli_env: None, event_streams: JetStreamContext, broker: NatsBroker, settings: Settings
) -> None:
    state = {"fixed": False}
    handled: list[StatsViewers] = []
    done = asyncio.Event()

    @durable_subscriber(broker, StatsViewers, durable="cli-dl", policy=RetryPolicy(max_deliver=2))
    async def handler(event: StatsViewers) -> None:
        if not state["fixed"]:
            raise PermanentError(f"viewer count {event.viewers} is impossible")
        handled.append(event)
        done.set()

    await broker.start()
    [event] = await publish_viewers(event_streams, 1)
    deadline = time.monotonic() + DEADLINE_S
    while (await event_streams.stream_info("DEAD_LETTERS")).state.messages < 1:
        assert time.monotonic() < deadline, "no dead letter"
        await asyncio.sleep(0.05)

    listed = ok(await invoke("dead-letters", "list", "--nats-url", settings.resolved_nats_url))
    row = table_row(listed.stdout, "1")
    assert row[2:7] == [event.subject(), "STATS", "1", "cli-dl", "1"]
    assert "PermanentError: viewer count 7 is impossible" in listed.stdout
    other = ok(await invoke("dead-letters", "list", "--consumer", "someone-else"))
    assert "dead letters (0)" in other.stdout

    unqualified = await invoke("dead-letters", "redrive")
    assert unqualified.exit_code == 1
    assert "--all" in unqualified.output
    assert (await event_streams.stream_info("DEAD_LETTERS")).state.messages == 1

    state["fixed"] = True
    redriven = ok(await invoke("dead-letters", "redrive", "--consumer", "cli-dl"))
    assert f"redriven 1 → {event.subject()}" in redriven.stdout
    await asyncio.wait_for(done.wait(), DEADLINE_S)
    assert handled == [event]
    assert "dead letters (0)" in ok(await invoke("dead-letters", "list")).stdout


# --- asyncapi -------------------------------------------------------------------------------


async def test_asyncapi_writes_the_document(cli_env: None, tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.json"
    ok(await invoke("asyncapi", "--output", str(target)))
    document = json.loads(target.read_text())
    assert document["asyncapi"] == "3.0.0"
    assert set(EVENTS_BY_TYPE) <= set(document["components"]["schemas"])

    printed = ok(await invoke("asyncapi"))
    assert json.loads(printed.stdout) == document
