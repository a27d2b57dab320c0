"""foundation: shared infrastructure tables

Revision ID: 0001_foundation
Revises:
Create Date: 2026-05-20

- processed_events: one row per (consumer, event) a handler has applied, written in the
  same transaction as the handler's side effect (common.idempotency.claim_event).
- projection_checkpoints: the last stream sequence a projection has folded in, so a
  rebuild or a restart resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_foundation"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_processed_events")),
    )
    # Pruning rows older than the stream's retention scans by time.
    op.create_index(
        op.f("ix_processed_events_processed_at"), "processed_events", ["processed_at"]
    )

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("projection_checkpoints")
    op.drop_index(op.f("ix_processed_events_processed_at"), table_name="processed_events")
    op.drop_table("processed_events")
