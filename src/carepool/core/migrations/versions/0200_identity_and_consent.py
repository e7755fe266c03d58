"""identity and consent

Revision ID: 0200
Revises: 0006
Create Date: 2026-11-28 21:25:03.192787
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0200"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "action",
            sa.Enum(
                "merge", "unmerge", "detach", name="historyaction", native_enum=False, length=10
            ),
            nullable=False,
        ),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("other_id", sa.String(length=40), nullable=False),
        sa.Column(
            "patient_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("cause", sa.String(length=10), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("match_probability", sa.Float(), nullable=True),
        sa.Column("reverses", sa.Integer(), nullable=True),
        sa.Column("undone_by", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_history")),
    )
    with op.batch_alter_table("identity_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_history_other_id"), ["other_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_history_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "identity_person",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum("active", "merged", name="personstatus", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("merged_into", sa.String(length=40), nullable=True),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["identity_person.id"],
            name=op.f("fk_identity_person_merged_into_identity_person"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_person")),
    )
    with op.batch_alter_table("identity_person", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_person_merged_into"), ["merged_into"], unique=False
        )

    op.create_table(
        "identity_run",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running", "succeeded", "failed", name="runstatus", native_enum=False, length=12
            ),
            nullable=False,
        ),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("started_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("auto_links", sa.Integer(), nullable=False),
        sa.Column("review", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.Integer(), nullable=False),
        sa.Column("new_persons", sa.Integer(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=False),
        sa.Column(
            "thresholds",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "model",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "timings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_run")),
    )
    op.create_table(
        "person_consent",
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column(
            "sharing",
            sa.Enum("allow", "deny", name="sharing", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_person_consent")),
    )
    with op.batch_alter_table("person_consent", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_person_consent_sharing"), ["sharing"], unique=False)

    op.create_table(
        "identity_candidate",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_a", sa.String(length=64), nullable=False),
        sa.Column("patient_b", sa.String(length=64), nullable=False),
        sa.Column("institution_a", sa.String(length=64), nullable=False),
        sa.Column("institution_b", sa.String(length=64), nullable=False),
        sa.Column("match_probability", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "accepted",
                "rejected",
                "superseded",
                name="candidatestatus",
                native_enum=False,
                length=12,
            ),
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_a"],
            ["patient.id"],
            name=op.f("fk_identity_candidate_patient_a_patient"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_b"],
            ["patient.id"],
            name=op.f("fk_identity_candidate_patient_b_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_candidate")),
        sa.UniqueConstraint("patient_a", "patient_b", name="uq_identity_candidate_pair"),
    )
    with op.batch_alter_table("identity_candidate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_candidate_institution_a"), ["institution_a"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_candidate_institution_b"), ["institution_b"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_candidate_patient_a"), ["patient_a"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_identity_candidate_patient_b"), ["patient_b"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_identity_candidate_status"), ["status"], unique=False)

    op.create_table(
        "identity_exclusion",
        sa.Column("patient_a", sa.String(length=64), nullable=False),
        sa.Column("patient_b", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_a"],
            ["patient.id"],
            name=op.f("fk_identity_exclusion_patient_a_patient"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_b"],
            ["patient.id"],
            name=op.f("fk_identity_exclusion_patient_b_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("patient_a", "patient_b", name=op.f("pk_identity_exclusion")),
    )
    with op.batch_alter_table("identity_exclusion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_exclusion_patient_b"), ["patient_b"], unique=False
        )

    op.create_table(
        "identity_link",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column(
            "source",
            sa.Enum(
                "new",
                "auto",
                "review",
                "manual",
                "unmerge",
                name="linksource",
                native_enum=False,
                length=10,
            ),
            nullable=False,
        ),
        sa.Column("match_probability", sa.Float(), nullable=True),
        sa.Column("linked_by", sa.String(length=64), nullable=False),
        sa.Column("linked_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_identity_link_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["identity_person.id"],
            name=op.f("fk_identity_link_person_id_identity_person"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_identity_link")),
    )
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.create_index(
            "ix_identity_link_institution_person", ["institution_id", "person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_identity_link_person_id"), ["person_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("identity_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_link_person_id"))
        batch_op.drop_index("ix_identity_link_institution_person")

    op.drop_table("identity_link")
    with op.batch_alter_table("identity_exclusion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_exclusion_patient_b"))

    op.drop_table("identity_exclusion")
    with op.batch_alter_table("identity_candidate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_candidate_status"))
        batch_op.drop_index(batch_op.f("ix_identity_candidate_patient_b"))
        batch_op.drop_index(batch_op.f("ix_identity_candidate_patient_a"))
        batch_op.drop_index(batch_op.f("ix_identity_candidate_institution_b"))
        batch_op.drop_index(batch_op.f("ix_identity_candidate_institution_a"))

    op.drop_table("identity_candidate")
    with op.batch_alter_table("person_consent", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_person_consent_sharing"))

    op.drop_table("person_consent")
    op.drop_table("identity_run")
    with op.batch_alter_table("identity_person", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_person_merged_into"))

    op.drop_table("identity_person")
    with op.batch_alter_table("identity_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_history_person_id"))
        batch_op.drop_index(batch_op.f("ix_identity_history_other_id"))

    op.drop_table("identity_history")
