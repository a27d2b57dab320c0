"""``python -m gateway``: serve the gateway with uvicorn on ``http_host:http_port``.

One process, one event loop. Several workers are several processes started by the
supervisor (``videopick up``) or the orchestrator; they share nothing but NATS and the
database, which is all the gateway needs (login limits and metrics are multi-process
safe). SIGINT/SIGTERM: uvicorn stops accepting, lets in-flight requests finish (up to
``GRACEFUL_S``), then runs the lifespan shutdown (broker drained, engine disposed).

``--migrate`` applies the database migrations first (the supervisor normally does).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Final

import uvicorn

from common.db import migrate
from common.logs import configure_logging, get_logger
from common.settings import Settings, SettingsError, get_settings
from gateway.gc_tuning import tune_gc
from gateway.malloc_tuning import tune_malloc

GRACEFUL_S: Final = 10
# Idle keep-alive connections are closed after this (behind a proxy: below its own).
KEEPALIVE_S: Final = 20


class GatewayServer(uvicorn.Server):
    """uvicorn's server; once the lifespan has run, the collector is tuned
    (gateway/gc_tuning.py): what start-up made is frozen then."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            tune_gc()


def build_server(settings: Settings) -> uvicorn.Server:
    from gateway.app import create_app
    from gateway.http_protocol import uvicorn_protocol_options

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        # X-Forwarded-For/-Proto are believed only from these peers (the TLS proxy).
        proxy_headers=True,
        forwarded_allow_ips=list(settings.http_trusted_proxies),
        log_config=None,  # structlog (common.logs) formats everything
        access_log=False,  # gateway.metrics writes the access line, without secrets
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        timeout_keep_alive=KEEPALIVE_S,
        # llhttp, with a bounded request head (gateway/http_protocol.py).
        **uvicorn_protocol_options(),
        # A chat frame above the limit is refused before it is buffered (1009).
        ws_max_size=settings.chat_ws_max_frame_bytes,
        ws_per_message_deflate=False,  # deflate would compress each frame once per socket
    )
    return GatewayServer(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--migrate", action="store_true", help="apply database migrations first")
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        configure_logging("gateway", settings.log_level, settings.log_json)
        if args.migrate:
            asyncio.run(migrate(settings.resolved_database_url))
        server = build_server(settings)
    except SettingsError as exc:
        print(f"gateway: configuration refused: {exc}", file=sys.stderr)
        return 2
    get_logger("gateway").info(
        "gateway listening", host=settings.http_host, port=settings.http_port
    )
    # Upload bodies without page faults (gateway/malloc_tuning.py).
    tune_malloc()
    server.run()
    # uvicorn returns normally when its startup failed (e.g. NATS unreachable).
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
