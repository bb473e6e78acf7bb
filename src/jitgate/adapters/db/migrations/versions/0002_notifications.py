"""Notifications: outbox delivery columns and single-use link records.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_status", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_outbox_stream", ["request_id", "channel", "created_at"], unique=False
        )
    op.create_table(
        "link_uses",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_link_uses_request", "link_uses", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_link_uses_request", table_name="link_uses")
    op.drop_table("link_uses")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_stream")
        batch_op.drop_column("last_status")
