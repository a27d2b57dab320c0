"""gateway accounts: users, channels (stream keys), login rate-limit counters

Revision ID: 0002_gateway_accounts
Revises: 0001_foundation
Create Date: 2026-05-20

- gateway_users: accounts. ``username_key``/``email_key`` are the case-folded forms
  that uniqueness and login look-ups use; the display forms are kept as typed.
- gateway_channels: one per user. ``stream_id`` is public and stable; the stream key
  is stored as its SHA-256 (``key_hash``, what ingest learns from the bus) plus an
  AES-GCM box (``key_box``) so its owner can be shown it again.
- gateway_rate_limits: fixed-window counters shared by every gateway process
  (``bucket`` is a hash of "scope:subject", never the raw login or address).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_gateway_accounts"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("gateway",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_users",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("username_key", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("email_key", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_users")),
    )
    # Unique indexes, not UNIQUE constraints: PostgreSQL reports a constraint's backing
    # index too, SQLite does not, and the two schemas must read the same.
    op.create_index(
        op.f("ix_gateway_users_username_key"), "gateway_users", ["username_key"], unique=True
    )
    op.create_index(op.f("ix_gateway_users_email_key"), "gateway_users", ["email_key"], unique=True)

    op.create_table(
        "gateway_channels",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("key_box", sa.Text(), nullable=False),
        sa.Column("key_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_gateway_channels")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["gateway_users.id"],
            name=op.f("fk_gateway_channels_user_id_gateway_users"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        op.f("ix_gateway_channels_user_id"), "gateway_channels", ["user_id"], unique=True
    )

    op.create_table(
        "gateway_rate_limits",
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_gateway_rate_limits")),
    )
    # Pruning expired windows scans by time.
    op.create_index(
        op.f("ix_gateway_rate_limits_window_start"), "gateway_rate_limits", ["window_start"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_gateway_rate_limits_window_start"), table_name="gateway_rate_limits")
    op.drop_table("gateway_rate_limits")
    op.drop_index(op.f("ix_gateway_channels_user_id"), table_name="gateway_channels")
    op.drop_table("gateway_channels")
    op.drop_index(op.f("ix_gateway_users_email_key"), table_name="gateway_users")
    op.drop_index(op.f("ix_gateway_users_username_key"), table_name="gateway_users")
    op.drop_table("gateway_users")
