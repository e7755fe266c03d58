"""booking: inpatient admissions, bed housekeeping and surgery cases

Revision ID: 0004
Revises: 0002

Beds and theatres are made busy by `resource_claim` rows (migration 0002); these tables hold
the admissions and cases that own those claims, and whether a bed waits for cleaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admission",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("requester_institution_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column(
            "patient_sex",
            sa.Enum(
                "female",
                "male",
                "other",
                "unknown",
                name="patientsex",
                native_enum=False,
                length=10,
            ),
            nullable=False,
        ),
        sa.Column("age", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("ward_id", sa.String(length=64), nullable=True),
        sa.Column(
            "needed_features",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("isolation", sa.Boolean(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "elective", "urgent", "emergency", name="priority", native_enum=False, length=12
            ),
            nullable=False,
        ),
        sa.Column("expected_stay_days", sa.Integer(), nullable=False),
        sa.Column("planned_admit_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "expected_discharge_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "bed_reserved",
                "admitted",
                "discharged",
                "cancelled",
                name="admissionstatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("bed_id", sa.String(length=64), nullable=True),
        sa.Column(
            "bed_history",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("admitted_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("discharged_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("age >= 0", name=op.f("ck_admission_age_non_negative")),
        sa.CheckConstraint("expected_stay_days >= 1", name=op.f("ck_admission_stay_positive")),
        sa.ForeignKeyConstraint(
            ["bed_id"], ["resource.id"], name=op.f("fk_admission_bed_id_resource")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_admission_department_id_department")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_admission_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["requester_institution_id"],
            ["institution.id"],
            name=op.f("fk_admission_requester_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(["ward_id"], ["ward.id"], name=op.f("fk_admission_ward_id_ward")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admission")),
        sa.UniqueConstraint("requested_by", "idempotency_key", name="uq_admission_idempotency"),
    )
    with op.batch_alter_table("admission", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admission_bed_id"), ["bed_id"], unique=False)
        batch_op.create_index(
            "ix_admission_member_status", ["institution_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_admission_patient_ref"), ["patient_ref"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_admission_requester_institution_id"),
            ["requester_institution_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_admission_status"), ["status"], unique=False)

    op.create_table(
        "bed_housekeeping",
        sa.Column("bed_id", sa.String(length=64), nullable=False),
        sa.Column(
            "state",
            sa.Enum("clean", "to_clean", name="housekeeping", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("since", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_admission_id", sa.String(length=64), nullable=True),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["bed_id"], ["resource.id"], name=op.f("fk_bed_housekeeping_bed_id_resource")
        ),
        sa.PrimaryKeyConstraint("bed_id", name=op.f("pk_bed_housekeeping")),
    )
    op.create_table(
        "surgery_case",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("requester_institution_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("surgeon_id", sa.String(length=64), nullable=False),
        sa.Column("expected_duration_min", sa.Integer(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "elective", "urgent", "emergency", name="priority", native_enum=False, length=12
            ),
            nullable=False,
        ),
        sa.Column("admission_id", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "scheduled",
                "in_theatre",
                "completed",
                "cancelled",
                name="surgerystatus",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("theatre_id", sa.String(length=64), nullable=True),
        sa.Column("start_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("block_start_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("block_end_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "team",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("started_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "expected_duration_min > 0", name=op.f("ck_surgery_case_duration_positive")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_surgery_case_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["requester_institution_id"],
            ["institution.id"],
            name=op.f("fk_surgery_case_requester_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_surgery_case_service_id_service")
        ),
        sa.ForeignKeyConstraint(
            ["surgeon_id"], ["resource.id"], name=op.f("fk_surgery_case_surgeon_id_resource")
        ),
        sa.ForeignKeyConstraint(
            ["theatre_id"], ["resource.id"], name=op.f("fk_surgery_case_theatre_id_resource")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surgery_case")),
        sa.UniqueConstraint("requested_by", "idempotency_key", name="uq_surgery_case_idempotency"),
    )
    with op.batch_alter_table("surgery_case", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_surgery_case_admission_id"), ["admission_id"], unique=False
        )
        batch_op.create_index(
            "ix_surgery_case_member_start", ["institution_id", "start_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_surgery_case_patient_ref"), ["patient_ref"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_surgery_case_requester_institution_id"),
            ["requester_institution_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_surgery_case_service_id"), ["service_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_surgery_case_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_surgery_case_surgeon_id"), ["surgeon_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_surgery_case_theatre_id"), ["theatre_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("surgery_case", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_surgery_case_theatre_id"))
        batch_op.drop_index(batch_op.f("ix_surgery_case_surgeon_id"))
        batch_op.drop_index(batch_op.f("ix_surgery_case_status"))
        batch_op.drop_index(batch_op.f("ix_surgery_case_service_id"))
        batch_op.drop_index(batch_op.f("ix_surgery_case_requester_institution_id"))
        batch_op.drop_index(batch_op.f("ix_surgery_case_patient_ref"))
        batch_op.drop_index("ix_surgery_case_member_start")
        batch_op.drop_index(batch_op.f("ix_surgery_case_admission_id"))

    op.drop_table("surgery_case")
    op.drop_table("bed_housekeeping")
    with op.batch_alter_table("admission", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admission_status"))
        batch_op.drop_index(batch_op.f("ix_admission_requester_institution_id"))
        batch_op.drop_index(batch_op.f("ix_admission_patient_ref"))
        batch_op.drop_index("ix_admission_member_status")
        batch_op.drop_index(batch_op.f("ix_admission_bed_id"))

    op.drop_table("admission")
