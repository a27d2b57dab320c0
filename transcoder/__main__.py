"""``python -m transcoder``: the transcoding component (one process, N job workers).

SIGTERM/SIGINT: running jobs' children are killed and their messages handed back
(nak) so another replica picks them up at once; then the broker and database close.
"""

from __future__ import annotations

import asyncio
import signal

from prometheus_client import Gauge

from common.logs import configure_logging, get_logger
from common.settings import get_settings
from events.metrics import serve_metrics
from transcoder.bus import COMPONENT, create_broker
from transcoder.worker import TranscodeWorker

log = get_logger(__name__)

JOBS_RUNNING = Gauge("videopick_transcode_jobs_running", "Transcode children running now")


async def serve() -> None:
    settings = get_settings()
    worker = TranscodeWorker(settings)
    JOBS_RUNNING.set_function(lambda: len(worker.children))
    broker = create_broker(settings, worker=worker)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await worker.start()
    try:
        await broker.start()
        log.info(
            "transcoder ready",
            workers=settings.transcode_workers,
            preset=settings.transcode_preset,
            ladder=",".join(settings.transcode_ladder),
            recordings=settings.transcode_recordings,
        )
        await stopping.wait()
        log.info("transcoder stopping")
    finally:
        await worker.stop()  # before the broker: the naks need the connection
        await broker.stop()


def main() -> None:
    settings = get_settings()
    configure_logging(COMPONENT, settings.log_level, settings.log_json)
    serve_metrics(settings, COMPONENT)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
