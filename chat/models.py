"""The chat component's tables (migration ``0007_chat``). Chat-owned only."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import Base, UtcDateTime

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
_BIGSERIAL = BigInteger().with_variant(Integer(), "sqlite")


class ChatUserRow(Base):
    __tablename__ = "chat_users"

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    username: Mapped[str] = mapped_column(Text)
    username_key: Mapped[str] = mapped_column(Text, index=True)
    stream_id: Mapped[str] = mapped_column(Text, index=True)
    registered_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class ChannelRow(Base):
    __tablename__ = "chat_channels"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    epoch: Mapped[str] = mapped_column(Text)
    last_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    cleared_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    slow_mode_s: Mapped[int] = mapped_column(Integer, default=0)
    rate_burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    links: Mapped[str] = mapped_column(Text, default="mods")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class ModRow(Base):
    __tablename__ = "chat_mods"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    granted_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class BanRow(Base):
    __tablename__ = "chat_bans"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    until_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: permanent
    actor_user_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class BannedWordRow(Base):
    __tablename__ = "chat_banned_words"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    word: Mapped[str] = mapped_column(Text, primary_key=True)


class UserStateRow(Base):
    __tablename__ = "chat_user_state"

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    tokens_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_message_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class MessageRow(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (Index("uq_chat_messages_message_id", "message_id", unique=True),)

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the offset
    message_id: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    user_name: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    effects: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    superchat: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON SuperChatInfo


class OutcomeRow(Base):
    __tablename__ = "chat_outcomes"

    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    events: Mapped[str] = mapped_column(Text)  # JSON list of encoded events
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)


class EffectWindowRow(Base):
    __tablename__ = "chat_effect_windows"
    __table_args__ = (Index("ix_chat_effect_windows_published", "published", "window_start_ms"),)

    stream_id: Mapped[str] = mapped_column(Text, primary_key=True)
    window_start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    counts: Mapped[str] = mapped_column(Text)  # JSON {emoji: count}
    published: Mapped[bool] = mapped_column(Boolean, default=False)


class WalletRow(Base):
    __tablename__ = "chat_wallets"

    user_id: Mapped[str] = mapped_column(Text, primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerTransactionRow(Base):
    __tablename__ = "chat_ledger_transactions"

    tx_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    from_user_id: Mapped[str] = mapped_column(Text, default="")
    to_user_id: Mapped[str] = mapped_column(Text, default="")
    stream_id: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerEntryRow(Base):
    __tablename__ = "chat_ledger_entries"
    __table_args__ = (
        Index("ix_chat_ledger_entries_user_id", "user_id", "id"),
        Index("uq_chat_ledger_entries_tx_id", "tx_id", "account", unique=True),
    )

    id: Mapped[int] = mapped_column(_BIGSERIAL, primary_key=True, autoincrement=True)
    tx_id: Mapped[str] = mapped_column(Text, ForeignKey("chat_ledger_transactions.tx_id"))
    account: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
