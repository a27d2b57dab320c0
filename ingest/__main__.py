"""``python -m ingest``: the RTMP ingest on ``rtmp_host:rtmp_port`` with live packaging.

Start order: database engine → broker (the ``channel.key_rotated`` consumer starts
catching up; keys stored earlier are already in ``ingest_channel_keys``) → object store
→ packaging → RTMP listener. SIGINT/SIGTERM: stop accepting, end every publish (sinks
closed with ``"shutdown"``), let the packager finish its last events, stop the broker.

The migrations are the supervisor's job (``videopick up``); ``--migrate`` runs them
first for a standalone start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

from faststream.nats import NatsBroker
from prometheus_client import Gauge

from common.db import create_engine, migrate, session_factory
from common.logs import configure_logging, get_logger
from common.settings import Settings, SettingsError, get_settings
from events.metrics import serve_metrics
from events.publisher import EventPublisher
from ingest import bus
from ingest.keys import KeyStore, PublisherLeases
from ingest.media import SinkFactory
from ingest.server import IngestConfig, IngestServer
from ingest.takeover import TakeoverLink

log = get_logger("ingest")

Closer = Callable[[], Awaitable[None]]

PUBLISHERS = Gauge("videopick_ingest_publishers", "RTMP publishers live in this process")


async def packaging_sink_factory(
    settings: Settings, broker: NatsBroker
) -> tuple[SinkFactory, Closer, Callable[[str], Awaitable[bool]]]:
    """THE SEAM: the packager's ``create_session_sink``, how to shut it down, and how to
    end a broadcast that waits for its publisher (a stop request)."""
    from common.store.factory import create_store
    from ingest.packager import create_packaging

    store = create_store(settings)
    await store.ensure_ready()
    packaging = create_packaging(settings, broker, store)

    async def close() -> None:
        try:
            await packaging.aclose()
        finally:
            await store.close()

    await packaging.start()  # hand-off of lingering broadcasts between ingest processes
    return packaging.open_session_sink, close, packaging.stop_stream


async def run(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    engine = create_engine(settings.resolved_database_url, application_name="videopick-ingest")
    sessions = session_factory(engine)
    keys = KeyStore(sessions)
    instance = f"{socket.gethostname()}:{os.getpid()}:{settings.instance or 'ingest'}"
    leases = PublisherLeases(sessions, instance=instance)
    broker = bus.create_broker(settings)
    runtime = bus.IngestRuntime(keys=keys)
    broker.context.set_global(bus.CONTEXT_KEY, runtime)
    takeover = TakeoverLink(lambda: broker.connection)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    close_packaging: Closer | None = None
    server: IngestServer | None = None
    try:
        await broker.start()
        sink_factory, close_packaging, stop_lingering = await packaging_sink_factory(
            settings, broker
        )
        server = IngestServer(
            IngestConfig.from_settings(settings),
            keys=keys,
            leases=leases,
            sink_factory=sink_factory,
            stats=EventPublisher(broker, producer=bus.COMPONENT),
            on_stop_requested=stop_lingering,
            take_over=takeover.ask,
        )
        runtime.server = server
        await takeover.serve(server.release_if_silent)
        PUBLISHERS.set_function(lambda: len(server.live) if server is not None else 0)
        await server.start()
        log.info(
            "ingest ready",
            rtmp=f"rtmp://{settings.rtmp_host}:{server.port}/live",
            known_channels=await keys.count(),
        )
        if ready is not None:
            ready.set()
        await stopping.wait()
        log.info("ingest stopping")
    finally:
        if server is not None:
            await server.stop()
        if close_packaging is not None:
            await close_packaging()
        await broker.stop()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--migrate", action="store_true", help="apply database migrations first")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"ingest: configuration refused: {exc}", file=sys.stderr)
        return 2
    configure_logging("ingest", settings.log_level, settings.log_json)
    serve_metrics(settings, "ingest")

    async def start() -> None:
        if args.migrate:
            await migrate(settings.resolved_database_url)
        await run(settings)

    asyncio.run(start())
    return 0


if __name__ == "__main__":
    sys.exit(main())
