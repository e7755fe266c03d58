"""records: patient death date and report order link

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 23:24:29.895617
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepool.core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("diagnostic_report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", sa.String(length=64), nullable=True))
        # Existing reports were stored without an order number: empty, like the model's default.
        batch_op.add_column(
            sa.Column("placer_number", sa.String(length=100), nullable=False, server_default="")
        )

    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deceased_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("deceased_at")

    with op.batch_alter_table("diagnostic_report", schema=None) as batch_op:
        batch_op.drop_column("placer_number")
        batch_op.drop_column("order_id")
