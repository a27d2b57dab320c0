"""The uploader's table (migration ``0005_uploads``). Uploader-owned only."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime

__all__ = ["State", "UploaderUpload"]


class State(enum.StrEnum):
    OPEN = "open"  # bytes arriving (upload.created, chunk.uploaded)
    FINALIZING = "finalizing"  # claimed by one finalizer until claim_until
    COMPLETED = "completed"  # upload.completed + transcode.requested published
    REJECTED = "rejected"  # upload.rejected published
    EXPIRED = "expired"  # swept, upload.expired published
    CANCELLED = "cancelled"  # the gateway terminated it (tus DELETE)


FINAL_STATES = frozenset({State.COMPLETED, State.REJECTED, State.EXPIRED, State.CANCELLED})


class UploaderUpload(Base):
    __tablename__ = "uploader_uploads"
    __table_args__ = (Index("ix_uploader_uploads_state_expires_at", "state", "expires_at"),)

    upload_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)  # -1 while deferred
    offset: Mapped[int] = mapped_column(BigInteger, server_default="0")
    filename: Mapped[str] = mapped_column(Text, server_default="")
    title: Mapped[str] = mapped_column(Text, server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    state: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    claim_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    video_id: Mapped[str] = mapped_column(Text, server_default="")
    sha256: Mapped[str] = mapped_column(Text, server_default="")
    reason_code: Mapped[str] = mapped_column(Text, server_default="")
    reason: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
