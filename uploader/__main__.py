"""``python -m uploader``: the upload lifecycle after the bytes arrive.

Consumes ``upload.created`` / ``chunk.uploaded`` / ``upload.rejected`` (cancellations),
finalizes completed uploads (assembly, SHA-256, the safety-netted probe) into
``upload.completed`` + ``transcode.requested`` or ``upload.rejected``, and sweeps
expired uploads (``upload.expired``). SIGTERM/SIGINT: the sweeper and the broker stop;
a finalization in flight is not acked and is redelivered to a replica.
"""

from __future__ import annotations

import asyncio
import signal

from common.logs import configure_logging, get_logger
from common.settings import get_settings
from events.metrics import serve_metrics
from uploader.bus import COMPONENT
from uploader.runtime import running_uploader

log = get_logger(__name__)


async def serve() -> None:
    settings = get_settings()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with running_uploader(settings):
        await stopping.wait()
        log.info("uploader stopping")


def main() -> None:
    settings = get_settings()
    configure_logging(COMPONENT, settings.log_level, settings.log_json)
    serve_metrics(settings, COMPONENT)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
