"""A session remembers when and why jitgate asked for its end.

Alembic logs this first paragraph when it runs the migration: it stays one line. The
columns ``termination_requested_at`` and ``termination_reason`` are set when a grant's end
asks the session's gateway to end it; ``ended_at`` stays the time its end was confirmed.
``NULL`` for sessions whose termination was never requested (and for those from before).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("termination_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("termination_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("termination_reason")
        batch.drop_column("termination_requested_at")
