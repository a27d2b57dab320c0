"""transcoder jobs remember their source, so a deleted video's source is found

Revision ID: 0008_transcoder_source
Revises: 0006_transcoder
Create Date: 2026-11-27

- transcoder_jobs.source_key: the object the job was asked to transcode. A
  ``video.deleted`` whose catalog row did not know the upload yet (a delete right after
  the upload) still removes the source the transcoder was handed (transcoder/deletion.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_transcoder_source"
down_revision: str | Sequence[str] | None = "0006_transcoder"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transcoder_jobs") as batch:
        batch.add_column(sa.Column("source_key", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("transcoder_jobs") as batch:
        batch.drop_column("source_key")
