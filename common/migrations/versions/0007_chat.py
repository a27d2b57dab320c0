"""chat: users and channels it knows, moderation, history, effects, the wallet ledger

Revision ID: 0007_chat
Revises: 0001_foundation
Create Date: 2026-05-20

Chat-owned tables (written by the chat component only):

- chat_users: who is who (from ``user.registered``): names for messages and
  moderation commands, and the channel each user owns (moderation rights, payee).
- chat_channels: one row per channel, locked while a message of that channel is
  decided: ``last_offset`` is the channel's sequence (every accepted message takes
  the next one), ``epoch`` names it; slow mode, rate limit and link policy.
- chat_mods, chat_bans (``until_ms`` NULL = permanent; else a timeout),
  chat_banned_words, chat_user_state (token bucket and last message per user and
  channel).
- chat_messages: the history, plain text as sent, keyed by (channel, seq = offset).
- chat_outcomes: the events a decided ``chat.message`` produced, re-sent as they were
  if the message is delivered again (publish after commit, at least once).
- chat_effect_windows: effect emoji counted per channel per second until flushed.
- chat_wallets / chat_ledger_transactions / chat_ledger_entries: a double-entry
  ledger. Every transaction's entries sum to zero; a wallet's balance is the sum of
  its entries and can never go below zero (CHECK, and the conditional debit).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_chat"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("chat",)
depends_on: str | Sequence[str] | None = None

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
_BIGSERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chat_users",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("username_key", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_chat_users")),
    )
    op.create_index(op.f("ix_chat_users_username_key"), "chat_users", ["username_key"])
    op.create_index(op.f("ix_chat_users_stream_id"), "chat_users", ["stream_id"])

    op.create_table(
        "chat_channels",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Text(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("cleared_offset", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("slow_mode_s", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("rate_burst", sa.Integer(), nullable=True),
        sa.Column("rate_per_s", sa.Float(), nullable=True),
        sa.Column("links", sa.Text(), nullable=False, server_default="mods"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_chat_channels")),
    )

    op.create_table(
        "chat_mods",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "user_id", name=op.f("pk_chat_mods")),
    )

    op.create_table(
        "chat_bans",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("until_ms", sa.BigInteger(), nullable=True),
        sa.Column("actor_user_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "user_id", name=op.f("pk_chat_bans")),
    )

    op.create_table(
        "chat_banned_words",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("word", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "word", name=op.f("pk_chat_banned_words")),
    )

    op.create_table(
        "chat_user_state",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("tokens_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_message_ms", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("stream_id", "user_id", name=op.f("pk_chat_user_state")),
    )

    op.create_table(
        "chat_messages",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("effects", sa.Text(), nullable=False, server_default="[]"),
        sa.Column("superchat", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("stream_id", "seq", name=op.f("pk_chat_messages")),
    )

    op.create_table(
        "chat_outcomes",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("events", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_chat_outcomes")),
    )
    op.create_index(op.f("ix_chat_outcomes_created_at"), "chat_outcomes", ["created_at"])

    op.create_table(
        "chat_effect_windows",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint(
            "stream_id", "window_start_ms", name=op.f("pk_chat_effect_windows")
        ),
    )
    op.create_index(
        op.f("ix_chat_effect_windows_published"),
        "chat_effect_windows",
        ["published", "window_start_ms"],
    )

    op.create_table(
        "chat_wallets",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_chat_wallets")),
        sa.CheckConstraint(
            "balance >= 0", name=op.f("ck_chat_wallets_balance_not_negative")
        ),
    )

    op.create_table(
        "chat_ledger_transactions",
        sa.Column("tx_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("from_user_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("to_user_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("stream_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("message_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("text", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tx_id", name=op.f("pk_chat_ledger_transactions")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_chat_ledger_transactions_amount_positive")),
    )

    op.create_table(
        "chat_ledger_entries",
        sa.Column("id", _BIGSERIAL, autoincrement=True, nullable=False),
        sa.Column("tx_id", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_ledger_entries")),
        sa.ForeignKeyConstraint(
            ["tx_id"],
            ["chat_ledger_transactions.tx_id"],
            name=op.f("fk_chat_ledger_entries_tx_id_chat_ledger_transactions"),
        ),
    )
    op.create_index(op.f("ix_chat_ledger_entries_user_id"), "chat_ledger_entries", ["user_id", "id"])
    # Unique indexes, not UNIQUE constraints: PostgreSQL reports a constraint's backing
    # index and SQLite does not, and both backends must show the same schema.
    op.create_index(
        "uq_chat_ledger_entries_tx_id", "chat_ledger_entries", ["tx_id", "account"], unique=True
    )
    op.create_index("uq_chat_messages_message_id", "chat_messages", ["message_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_chat_messages_message_id", table_name="chat_messages")
    op.drop_index("uq_chat_ledger_entries_tx_id", table_name="chat_ledger_entries")
    op.drop_index(op.f("ix_chat_ledger_entries_user_id"), table_name="chat_ledger_entries")
    op.drop_table("chat_ledger_entries")
    op.drop_table("chat_ledger_transactions")
    op.drop_table("chat_wallets")
    op.drop_index(op.f("ix_chat_effect_windows_published"), table_name="chat_effect_windows")
    op.drop_table("chat_effect_windows")
    op.drop_index(op.f("ix_chat_outcomes_created_at"), table_name="chat_outcomes")
    op.drop_table("chat_outcomes")
    op.drop_table("chat_messages")
    op.drop_table("chat_user_state")
    op.drop_table("chat_banned_words")
    op.drop_table("chat_bans")
    op.drop_table("chat_mods")
    op.drop_index(op.f("ix_chat_users_stream_id"), table_name="chat_users")
    op.drop_index(op.f("ix_chat_users_username_key"), table_name="chat_users")
    op.drop_table("chat_users")
    op.drop_table("chat_channels")
