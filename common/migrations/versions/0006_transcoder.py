"""transcoder jobs: one row per video, the job's lifecycle, lease and stored result

Revision ID: 0006_transcoder
Revises: 0001_foundation
Create Date: 2026-05-21

- transcoder_jobs: status running → encoded → published (or failed); ``owner`` and
  ``lease_until`` say which worker runs it now; ``result`` is the finished job (JSON)
  and the two event ids are fixed before publishing, so a retried publish repeats the
  same events (transcoder/jobs.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_transcoder"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("transcoder",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcoder_jobs",
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("request_event_id", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False, server_default=""),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("completed_event_id", sa.Text(), nullable=True),
        sa.Column("published_event_id", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_transcoder_jobs")),
    )


def downgrade() -> None:
    op.drop_table("transcoder_jobs")
