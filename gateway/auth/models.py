"""The gateway's account tables (migration 0002_gateway_accounts). Gateway-owned only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime


class User(Base):
    __tablename__ = "gateway_users"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    # Case-folded forms: "Alice" and "alice" are one account, and login matches either.
    username_key: Mapped[str] = mapped_column(Text, unique=True, index=True)
    email: Mapped[str] = mapped_column(Text)
    email_key: Mapped[str] = mapped_column(Text, unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class RateLimitWindow(Base):
    """One fixed window of one limiter bucket; rows past their window are pruned."""

    __tablename__ = "gateway_rate_limits"

    bucket: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    hits: Mapped[int] = mapped_column(Integer)
