"""One chat worker: database, broker, service; started and stopped explicitly.

``python -m chat`` runs one until SIGINT/SIGTERM; tests run several in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from chat.bus import CONTEXT_KEY, create_broker
from chat.pipeline import now_ms
from chat.service import COMPONENT, ChatService
from chat.stages import STAGES
from common.db import create_engine, session_factory
from common.logs import get_logger
from common.settings import Settings
from events.publisher import EventPublisher

log = get_logger(__name__)


class ChatWorker:
    def __init__(self, settings: Settings, *, clock_ms: Callable[[], int] = now_ms) -> None:
        self.settings = settings
        STAGES.enabled = settings.chat_stages
        # No ping per checkout: a decision on a dropped connection fails, is redelivered
        # and finds a fresh one (SQLAlchemy replaces the pool's connections on a
        # disconnect); a ping would cost a round trip in every batch.
        self.engine = create_engine(
            settings.resolved_database_url,
            application_name=f"videopick-{COMPONENT}",
            pre_ping=False,
        )
        self.sessions = session_factory(self.engine)
        self.broker = create_broker(settings)
        self.service = ChatService(
            settings,
            self.sessions,
            EventPublisher(self.broker, producer=COMPONENT),
            clock_ms=clock_ms,
        )

    async def start(self) -> None:
        self.broker.context.set_global(CONTEXT_KEY, self.service)
        await self.broker.start()
        self.service.start()
        log.info("chat worker ready", nats=self.settings.resolved_nats_url)

    async def stop(self) -> None:
        """Background tasks, then the consumers, then the database: each even if the
        one before failed (a half-stopped worker would go on consuming)."""
        try:
            await self.service.stop()
        finally:
            try:
                await self.broker.stop()
            finally:
                await self.engine.dispose()
