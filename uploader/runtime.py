"""The uploader's process runtime: open everything, start the broker and the sweeper.

Used by ``python -m uploader`` and by tests (which run the same thing in-process).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from common.db import create_engine, session_factory
from common.logs import get_logger
from common.settings import Settings
from common.store import create_store
from events.publisher import EventPublisher
from uploader.bus import COMPONENT, CONTEXT_KEY, create_broker
from uploader.services import Services
from uploader.sweeper import Sweeper

__all__ = ["SWEEP_GRACE_S", "running_uploader"]

log = get_logger(__name__)

# Beyond an upload's expiry before it is swept: clock skew between hosts and the
# gateway's lock lease (a PATCH that began just before expiry is visible by its lock).
SWEEP_GRACE_S: Final = 60.0


@asynccontextmanager
async def running_uploader(
    settings: Settings, *, sweep: bool = True, sweep_grace_s: float = SWEEP_GRACE_S
) -> AsyncIterator[Services]:
    engine = create_engine(settings.resolved_database_url, application_name="videopick-uploader")
    store = create_store(settings)
    broker = create_broker(settings)
    services = Services(
        settings=settings,
        sessions=session_factory(engine),
        store=store,
        publisher=EventPublisher(broker, producer=COMPONENT),
    )
    sweeper = Sweeper(services, interval_s=settings.upload_sweep_interval_s, grace_s=sweep_grace_s)
    try:
        await store.ensure_ready()
        broker.context.set_global(CONTEXT_KEY, services)
        await broker.start()
        if sweep:
            await sweeper.start()
        log.info("uploader ready", store=repr(store), nats=settings.resolved_nats_url)
        yield services
    finally:
        await sweeper.stop()
        await broker.stop()
        await store.close()
        await engine.dispose()
