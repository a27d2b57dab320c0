"""A chat worker's work, behind the bus handlers (``chat.bus``).

- ``chat.message`` → :class:`~chat.pipeline.ChatPipeline` decides (in batches, one
  transaction each: ``chat.batcher``), then the outcome
  (``chat.accepted`` + ``chat.superchat``, ``chat.rejected`` or ``chat.moderation``)
  is published after the commit;
- ``user.registered`` → ``chat_users`` (names; who owns which channel);
- ``chat.topup`` → the ledger (transaction ``topup:<event_id>``: once);
- the effect flusher publishes ``chat.effect`` once a second per active channel;
- ``rpc.chat.history`` / ``rpc.chat.wallet`` answer the gateways' reads.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chat import ledger
from chat.batcher import DecisionBatcher
from chat.effects import EffectFlusher
from chat.history import history_page
from chat.housekeeping import Housekeeper
from chat.models import ChatUserRow
from chat.pipeline import COMPONENT, CONSUMER, ChatPipeline, Rules, now_ms
from chat.sql import insert_ignore
from chat.stages import STAGES
from common.logs import get_logger
from common.settings import Settings
from events.catalog import ChatAccepted, ChatMessage, ChatTopup, UserRegistered
from events.chat_queries import HistoryPage, HistoryQuery, WalletQuery, WalletView
from events.consumer import run_once
from events.envelope import Event
from events.errors import PermanentError
from events.publisher import EventPublisher

log = get_logger(__name__)

USERS_CONSUMER = "chat-users"


class ChatService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.publisher = publisher
        self.clock_ms = clock_ms
        self.pipeline = ChatPipeline(sessions, Rules.from_settings(settings), clock_ms)
        self.batcher = DecisionBatcher(self.pipeline)
        self.flusher = EffectFlusher(sessions, self._publish, clock_ms)
        self.housekeeper = Housekeeper(
            sessions,
            # The stream keeps events this long; a claim must outlive its event.
            keep_claims=dt.timedelta(days=settings.events_max_age_days + 1),
            consumers=(CONSUMER, USERS_CONSUMER),
        )
        self.decided = 0  # chat.message decisions made by this worker (metrics, tests)

    def start(self) -> None:
        self.batcher.start()
        self.flusher.start()
        self.housekeeper.start()

    async def stop(self) -> None:
        await self.housekeeper.stop()
        await self.flusher.stop()
        await self.batcher.stop()

    async def _publish(self, event: Event) -> None:
        await self.publisher.publish(event)

    async def on_message(self, message: ChatMessage) -> None:
        events = await self.batcher.decide(message)
        self.decided += 1
        if any(isinstance(e, ChatAccepted) and e.effects for e in events):
            self.flusher.counted()
        started = time.monotonic()
        for event in events:
            await self._publish(event)
        STAGES.add("publish", (time.monotonic() - started) * 1000)

    async def on_user_registered(self, event: UserRegistered) -> None:
        async def upsert(session: AsyncSession) -> None:
            values = {
                "user_id": event.user_id,
                "username": event.username,
                "username_key": event.username.casefold(),
                "stream_id": event.stream_id,
                "registered_at": event.occurred_at.astimezone(dt.UTC),
            }
            if not await insert_ignore(session, ChatUserRow, values, ["user_id"]):
                await session.execute(
                    update(ChatUserRow)
                    .where(ChatUserRow.user_id == event.user_id)
                    .values(
                        username=values["username"],
                        username_key=values["username_key"],
                        stream_id=values["stream_id"],
                    )
                )

        await run_once(self.sessions, USERS_CONSUMER, event, upsert)

    async def on_topup(self, event: ChatTopup) -> None:
        if not 0 < event.amount <= ledger.MAX_TOPUP or not event.user_id:
            raise PermanentError(f"top-up {event.event_id}: amount {event.amount} refused")
        async with self.sessions.begin() as session:
            applied = await ledger.topup(
                session,
                tx_id=f"topup:{event.event_id}",
                user_id=event.user_id,
                amount=event.amount,
                now_ms=self.clock_ms(),
                note=event.note,
            )
        log.info("top-up", user_id=event.user_id, amount=event.amount, applied=applied)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        try:
            return await history_page(self.sessions, query)
        except Exception as exc:
            log.exception("history query failed", stream_id=query.stream_id)
            return HistoryPage(error=type(exc).__name__)

    async def wallet(self, query: WalletQuery) -> WalletView:
        try:
            async with self.sessions() as session:
                return await ledger.wallet_view(
                    session, query.user_id, limit=query.limit, tx_id=query.tx_id
                )
        except Exception as exc:
            log.exception("wallet query failed", user_id=query.user_id)
            return WalletView(error=type(exc).__name__)


__all__ = ["COMPONENT", "ChatService"]
