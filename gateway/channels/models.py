"""The gateway's channel table (migration 0002_gateway_accounts)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime


class Channel(Base):
    __tablename__ = "gateway_channels"

    # Public and stable: in playback URLs and chat channel names. Random, not the user id.
    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(
        Text, ForeignKey("gateway_users.id", ondelete="CASCADE"), unique=True, index=True
    )
    # sha256 hex of the stream key: what ingest learns (channel.key_rotated).
    key_hash: Mapped[str] = mapped_column(Text)
    # The key itself, AES-GCM encrypted at rest, so its owner can be shown it again.
    key_box: Mapped[str] = mapped_column(Text)
    key_rotated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    title: Mapped[str] = mapped_column(Text, server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
