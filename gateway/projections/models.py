"""The catalog projection's tables (migration ``0003_gateway_catalog``).

Only the catalog projector writes them, and only from events; drop them and replay
the log and they come back identical (DESIGN.md). Columns are grouped by the stream
whose events write them, because streams are read concurrently and a row must end the
same whatever the interleaving between streams (see ``reducer.py``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Float, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime

__all__ = ["CatalogChannel", "CatalogUser", "CatalogVideo"]


class CatalogUser(Base):
    """``user.registered`` (ACCOUNTS)."""

    __tablename__ = "gateway_catalog_users"

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    stream_id: Mapped[str] = mapped_column(Text, index=True)
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class CatalogChannel(Base):
    """One per user; ``stream_id`` is the public id fixed at registration."""

    __tablename__ = "gateway_catalog_channels"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    # ACCOUNTS and STREAMS both carry the owner (the same value).
    user_id: Mapped[str | None] = mapped_column(Text, index=True)
    # ACCOUNTS: user.registered, channel.updated
    username: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    meta_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # STREAMS: stream.started, stream.ended
    live: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    session_id: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    end_reason: Mapped[str | None] = mapped_column(Text)
    video_codec: Mapped[str | None] = mapped_column(Text)
    audio_codec: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    # MEDIA: the poster of the channel's latest published recording (its thumbnail)
    poster_video_id: Mapped[str | None] = mapped_column(Text)
    poster_key: Mapped[str | None] = mapped_column(Text)
    poster_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class CatalogVideo(Base):
    """An upload or a recording, from ``processing`` to ``ready``/``failed``/``deleted``."""

    __tablename__ = "gateway_catalog_videos"
    # The listing: one status, newest first, keyset-paginated on (sort_at, video_id).
    __table_args__ = (Index("ix_gateway_catalog_videos_listing", "status", "sort_at", "video_id"),)

    video_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, index=True)
    # The source — UPLOADS: upload.completed; STREAMS: stream.recorded
    origin: Mapped[str | None] = mapped_column(Text)
    upload_id: Mapped[str | None] = mapped_column(Text)
    stream_id: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(Text)
    src_title: Mapped[str | None] = mapped_column(Text)
    src_description: Mapped[str | None] = mapped_column(Text)
    src_duration_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # MEDIA: transcode.*, video.published, video.deleted
    status: Mapped[str] = mapped_column(Text, default="processing")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    master_key: Mapped[str | None] = mapped_column(Text)
    poster_key: Mapped[str | None] = mapped_column(Text)
    media_duration_s: Mapped[float | None] = mapped_column(Float)
    media_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    pub_title: Mapped[str | None] = mapped_column(Text)
    pub_description: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    # Derived from the columns above only (never from arrival order), for the listing.
    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    sort_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
