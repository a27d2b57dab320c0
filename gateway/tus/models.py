"""The gateway's upload tables (migration ``0005_uploads``). Gateway-owned only."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime

__all__ = ["EngineState", "StatusState", "Upload", "UploadStatus"]


class EngineState(enum.StrEnum):
    OPEN = "open"  # accepting bytes
    COMPLETE = "complete"  # every byte durable and chunk.uploaded(complete) published
    TERMINATED = "terminated"  # tus DELETE: bytes removed, every request now 404


class Upload(Base):
    """One tus upload. The offset is deliberately absent: it is derived from the store."""

    __tablename__ = "gateway_uploads"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, index=True)
    object_key: Mapped[str] = mapped_column(Text)
    # The store's multipart upload id ("" for an empty upload, which has no parts).
    multipart_id: Mapped[str] = mapped_column(Text, server_default="")
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    filename: Mapped[str] = mapped_column(Text, server_default="")
    title: Mapped[str] = mapped_column(Text, server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    state: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    lock_token: Mapped[str | None] = mapped_column(Text, nullable=True)
    lock_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class StatusState(enum.StrEnum):
    """What GET /api/v2/upload/{id} reports; ordered by how far an upload got."""

    UPLOADING = "uploading"
    PROCESSING = "processing"  # every byte arrived; the uploader assembles and probes
    READY = "ready"  # upload.completed: a video id exists, transcoding follows
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class UploadStatus(Base):
    """Projection of upload.* and chunk.* events; rebuilt by replay, never written else."""

    __tablename__ = "gateway_upload_status"

    upload_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, index=True)
    state: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)  # -1 while deferred
    offset: Mapped[int] = mapped_column(BigInteger, server_default="0")
    filename: Mapped[str] = mapped_column(Text, server_default="")
    title: Mapped[str] = mapped_column(Text, server_default="")
    video_id: Mapped[str] = mapped_column(Text, server_default="")
    reason_code: Mapped[str] = mapped_column(Text, server_default="")
    reason: Mapped[str] = mapped_column(Text, server_default="")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
