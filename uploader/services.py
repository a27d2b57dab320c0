"""What the uploader's handlers and sweeper use, built once per process (``__main__``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.settings import Settings
from common.store import ObjectStore
from events.publisher import EventPublisher

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    store: ObjectStore
    publisher: EventPublisher
