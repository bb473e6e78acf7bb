"""Backends: where each request's grant stands on each backend, and the SSH KRL entries.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backend_grants",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("backend_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("in_flight", sa.Boolean(), nullable=False),
        sa.Column("called", sa.Boolean(), nullable=False),
        sa.Column("terminate", sa.Boolean(), nullable=False),
        sa.Column("ended_early", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("covered_by", sa.String(length=36), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("request_id", "backend"),
    )
    with op.batch_alter_table("backend_grants", schema=None) as batch_op:
        batch_op.create_index("ix_backend_grants_due", ["status", "next_attempt_at"])
        batch_op.create_index("ix_backend_grants_user", ["user_email", "backend", "status"])
        batch_op.create_index("ix_backend_grants_removed", ["status", "removed_at"])

    op.create_table(
        "ssh_revoked_keys",
        sa.Column("ca_fingerprint", sa.String(length=100), nullable=False),
        sa.Column("key_id", sa.String(length=500), nullable=False),
        sa.Column("ca_public_key", sa.Text(), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ca_fingerprint", "key_id"),
    )


def downgrade() -> None:
    op.drop_table("ssh_revoked_keys")
    with op.batch_alter_table("backend_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_backend_grants_removed")
        batch_op.drop_index("ix_backend_grants_user")
        batch_op.drop_index("ix_backend_grants_due")
    op.drop_table("backend_grants")
