"""records and ingest: parse flags, comparators, record versions, run accounting

Revision ID: 0013
Revises: 0012

- `patient.flags`, `clinical_order.flags`: the quality flags a connector found while parsing
  (encounters, reports and observations had a `flags` column already).
- `observation.comparator`: `<`, `<=`, `>=`, `>` as the member sent it (empty: an exact value).
- `record_version`: the previous content of a record each time an update replaces it.
- `ingest_run.unmodelled` and `ingest_run.warnings`: parts kept but not modelled, by type, and
  what a run noticed without rejecting anything (an empty delivery).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepool.core.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = carepool.core.db.JsonType
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flags", json, nullable=False, server_default="[]"))
    with op.batch_alter_table("clinical_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flags", json, nullable=False, server_default="[]"))
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("comparator", sa.String(length=2), nullable=False, server_default="")
        )
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unmodelled", json, nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("warnings", json, nullable=False, server_default="[]"))
    op.create_table(
        "record_version",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("record_type", sa.String(length=30), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("content", json, nullable=False),
        sa.Column("replaced_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("replaced_by_run", sa.String(length=40), nullable=True),
    )
    op.create_index("ix_record_version_record_id", "record_version", ["record_id"])


def downgrade() -> None:
    op.drop_index("ix_record_version_record_id", table_name="record_version")
    op.drop_table("record_version")
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("unmodelled")
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.drop_column("comparator")
    with op.batch_alter_table("clinical_order", schema=None) as batch_op:
        batch_op.drop_column("flags")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("flags")
