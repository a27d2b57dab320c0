"""``python -m chat``: one chat worker until SIGINT/SIGTERM (replicas share the work)."""

from __future__ import annotations

import asyncio
import signal
import sys

from chat.worker import ChatWorker
from common.logs import configure_logging
from common.settings import SettingsError, get_settings
from events.metrics import serve_metrics


async def _run() -> None:
    worker = ChatWorker(get_settings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await worker.start()
    try:
        await stop.wait()
    finally:
        await worker.stop()


def main() -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"chat: configuration refused: {exc}", file=sys.stderr)
        return 2
    configure_logging("chat", settings.log_level, settings.log_json)
    serve_metrics(settings, "chat")
    asyncio.run(_run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
