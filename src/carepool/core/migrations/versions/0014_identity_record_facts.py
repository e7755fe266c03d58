"""identity: what the index last evaluated of each record (relink and incremental linking)

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-08 04:45:00.000000

`identity_record` keeps each linked record's matching features and their hash: a record whose
features now hash differently was changed by a feed and its person is re-evaluated; the
indexed columns are the blocking keys an incremental link looks candidates up by.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepool.core.db

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_record",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("name_han", sa.String(length=200), nullable=True),
        sa.Column("name_key", sa.String(length=200), nullable=True),
        sa.Column("name_rev", sa.String(length=200), nullable=True),
        sa.Column("name_initial", sa.String(length=4), nullable=True),
        sa.Column("name_phonetic", sa.String(length=200), nullable=True),
        sa.Column("sex", sa.String(length=10), nullable=True),
        sa.Column("dob", sa.String(length=8), nullable=True),
        sa.Column("birth_year", sa.String(length=4), nullable=True),
        sa.Column("nid", sa.String(length=40), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=400), nullable=True),
        sa.Column("ids", sa.Text(), nullable=True),
        sa.Column("facts_hash", sa.String(length=64), nullable=False),
        sa.Column("evaluated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_identity_record_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_identity_record")),
    )
    with op.batch_alter_table("identity_record", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_record_nid"), ["nid"], unique=False)
        batch_op.create_index(batch_op.f("ix_identity_record_phone"), ["phone"], unique=False)
        batch_op.create_index("ix_identity_record_name_year", ["name_key", "birth_year"])
        batch_op.create_index("ix_identity_record_rev_year", ["name_rev", "birth_year"])
        batch_op.create_index("ix_identity_record_dob_initial", ["dob", "name_initial"])


def downgrade() -> None:
    op.drop_table("identity_record")
