"""uploads: the gateway's tus engine and upload status, the uploader's lifecycle

Revision ID: 0005_uploads
Revises: 0001_foundation
Create Date: 2026-05-21

Gateway (gateway/tus):

- gateway_uploads: one row per tus upload, the engine's own state. The byte offset is
  NOT stored: it is derived from the object store (multipart parts + the tail object)
  so it can never claim bytes that are not durable. ``length`` is NULL while deferred
  (Upload-Defer-Length). ``lock_token``/``lock_until`` are the one-PATCH-at-a-time
  lease. ``expires_at`` slides with each durable chunk (tus expiration).
- gateway_upload_status: the status users read (GET /api/v2/upload/{id}), a projection
  of upload.* / chunk.* events: it can be emptied and rebuilt by replay.

Uploader (uploader/):

- uploader_uploads: the lifecycle the uploader follows from events (created → chunks →
  finalizing → completed | rejected | expired | cancelled) and what finalizing found
  (video id, sha256, rejection reason). ``claim_until`` guards one finalization at a
  time across uploader replicas.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_uploads"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("uploads",)
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_uploads",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("multipart_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("filename", sa.Text(), nullable=False, server_default=""),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("lock_token", sa.Text(), nullable=True),
        sa.Column("lock_until", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_uploads")),
    )
    op.create_index(op.f("ix_gateway_uploads_user_id"), "gateway_uploads", ["user_id"])

    op.create_table(
        "gateway_upload_status",
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("filename", sa.Text(), nullable=False, server_default=""),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("video_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("reason_code", sa.Text(), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_gateway_upload_status")),
    )
    op.create_index(op.f("ix_gateway_upload_status_user_id"), "gateway_upload_status", ["user_id"])

    op.create_table(
        "uploader_uploads",
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("filename", sa.Text(), nullable=False, server_default=""),
        sa.Column("title", sa.Text(), nullable=False, server_default=""),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("claim_until", TZ, nullable=True),
        sa.Column("video_id", sa.Text(), nullable=False, server_default=""),
        sa.Column("sha256", sa.Text(), nullable=False, server_default=""),
        sa.Column("reason_code", sa.Text(), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", name=op.f("pk_uploader_uploads")),
    )
    # The expiry sweep scans open uploads by expiry.
    op.create_index(
        op.f("ix_uploader_uploads_state_expires_at"), "uploader_uploads", ["state", "expires_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_uploader_uploads_state_expires_at"), table_name="uploader_uploads")
    op.drop_table("uploader_uploads")
    op.drop_index(op.f("ix_gateway_upload_status_user_id"), table_name="gateway_upload_status")
    op.drop_table("gateway_upload_status")
    op.drop_index(op.f("ix_gateway_uploads_user_id"), table_name="gateway_uploads")
    op.drop_table("gateway_uploads")
