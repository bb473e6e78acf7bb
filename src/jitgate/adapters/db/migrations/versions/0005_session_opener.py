"""A session remembers the gateway that opened it: ``sessions.opened_by``.

Alembic logs this first paragraph when it runs the migration: it stays one line. The
column holds ``service:NAME``, the gateway that alone may end the session through the API;
``NULL`` for sessions opened before.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("opened_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("opened_by")
