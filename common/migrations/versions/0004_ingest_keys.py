"""ingest keys: stream-key hashes learned from events, and who publishes each channel

Revision ID: 0004_ingest_keys
Revises: 0001_foundation
Create Date: 2026-05-22

- ingest_channel_keys: one row per channel, the newest ``channel.key_rotated`` seen
  (``key_hash`` = SHA-256 hex of the stream key; never the key). ``rotated_at`` and
  ``event_id`` order rotations, so a redelivered older event cannot win. Filled by
  ingest's durable consumer; a restarted ingest knows every key.
- ingest_publishers: the one live publisher per channel across ingest processes, as a
  lease renewed with each stats tick; a crashed process's lease lapses.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_ingest_keys"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("ingest",)
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ingest_channel_keys",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("hash_algorithm", sa.Text(), nullable=False),
        sa.Column("rotated_at", TZ, nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_ingest_channel_keys")),
    )
    # A publish looks its key up by hash.
    op.create_index(op.f("ix_ingest_channel_keys_key_hash"), "ingest_channel_keys", ["key_hash"])

    op.create_table(
        "ingest_publishers",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_ingest_publishers")),
    )


def downgrade() -> None:
    op.drop_table("ingest_publishers")
    op.drop_index(op.f("ix_ingest_channel_keys_key_hash"), table_name="ingest_channel_keys")
    op.drop_table("ingest_channel_keys")
