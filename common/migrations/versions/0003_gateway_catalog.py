"""gateway catalog: the projection of channels, users and videos

Revision ID: 0003_gateway_catalog
Revises: 0001_foundation
Create Date: 2026-05-21

Tables only the gateway's catalog projector writes (gateway/projections), from events.
They can be emptied and rebuilt by replay at any time (`projections rebuild`); their
position in each stream is in `projection_checkpoints` (name `gateway_catalog:<STREAM>`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_gateway_catalog"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("gateway_catalog",)
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_catalog_users",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("registered_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_gateway_catalog_users")),
    )
    op.create_index(
        op.f("ix_gateway_catalog_users_stream_id"), "gateway_catalog_users", ["stream_id"]
    )

    op.create_table(
        "gateway_catalog_channels",
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("meta_at", TZ, nullable=True),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("ended_at", TZ, nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("video_codec", sa.Text(), nullable=True),
        sa.Column("audio_codec", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("poster_video_id", sa.Text(), nullable=True),
        sa.Column("poster_key", sa.Text(), nullable=True),
        sa.Column("poster_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("stream_id", name=op.f("pk_gateway_catalog_channels")),
    )
    op.create_index(
        op.f("ix_gateway_catalog_channels_user_id"), "gateway_catalog_channels", ["user_id"]
    )
    op.create_index(op.f("ix_gateway_catalog_channels_live"), "gateway_catalog_channels", ["live"])

    op.create_table(
        "gateway_catalog_videos",
        sa.Column("video_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("upload_id", sa.Text(), nullable=True),
        sa.Column("stream_id", sa.Text(), nullable=True),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("src_title", sa.Text(), nullable=True),
        sa.Column("src_description", sa.Text(), nullable=True),
        sa.Column("src_duration_s", sa.Float(), nullable=True),
        sa.Column("created_at", TZ, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("master_key", sa.Text(), nullable=True),
        sa.Column("poster_key", sa.Text(), nullable=True),
        sa.Column("media_duration_s", sa.Float(), nullable=True),
        sa.Column("media_at", TZ, nullable=True),
        sa.Column("pub_title", sa.Text(), nullable=True),
        sa.Column("pub_description", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("published_at", TZ, nullable=True),
        sa.Column("deleted_at", TZ, nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sort_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("video_id", name=op.f("pk_gateway_catalog_videos")),
    )
    op.create_index(
        op.f("ix_gateway_catalog_videos_user_id"), "gateway_catalog_videos", ["user_id"]
    )
    # The listing: one status, newest first, keyset pagination on (sort_at, video_id).
    op.create_index(
        "ix_gateway_catalog_videos_listing",
        "gateway_catalog_videos",
        ["status", "sort_at", "video_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_gateway_catalog_videos_listing", table_name="gateway_catalog_videos")
    op.drop_index(op.f("ix_gateway_catalog_videos_user_id"), table_name="gateway_catalog_videos")
    op.drop_table("gateway_catalog_videos")
    op.drop_index(op.f("ix_gateway_catalog_channels_live"), table_name="gateway_catalog_channels")
    op.drop_index(
        op.f("ix_gateway_catalog_channels_user_id"), table_name="gateway_catalog_channels"
    )
    op.drop_table("gateway_catalog_channels")
    op.drop_index(op.f("ix_gateway_catalog_users_stream_id"), table_name="gateway_catalog_users")
    op.drop_table("gateway_catalog_users")
