"""booking: referrals and lab/exam orders (version-guarded rows with their step history)

Revision ID: 0005
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_order",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("ordering_institution_id", sa.String(length=64), nullable=False),
        sa.Column("ordered_by", sa.String(length=64), nullable=False),
        sa.Column("clinician", sa.String(length=200), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "routine", "urgent", "asap", "stat", name="priority", native_enum=False, length=10
            ),
            nullable=False,
        ),
        sa.Column("indication", sa.Text(), nullable=False),
        sa.Column("target_institution_id", sa.String(length=64), nullable=True),
        sa.Column("performing_institution_id", sa.String(length=64), nullable=True),
        sa.Column("distance_km", sa.Float(), nullable=True),
        sa.Column("routing_note", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "placed",
                "routed",
                "scheduled",
                "in_progress",
                "completed",
                "cancelled",
                name="orderstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("appointment_id", sa.String(length=64), nullable=True),
        sa.Column("result_ref", sa.String(length=500), nullable=True),
        sa.Column("result_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column(
            "history",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_service_order_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["ordering_institution_id"],
            ["institution.id"],
            name=op.f("fk_service_order_ordering_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["performing_institution_id"],
            ["institution.id"],
            name=op.f("fk_service_order_performing_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_service_order_service_id_service")
        ),
        sa.ForeignKeyConstraint(
            ["target_institution_id"],
            ["institution.id"],
            name=op.f("fk_service_order_target_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_order")),
        sa.UniqueConstraint("ordered_by", "idempotency_key", name="uq_service_order_idempotency"),
    )
    with op.batch_alter_table("service_order", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_order_appointment_id"), ["appointment_id"], unique=False
        )
        batch_op.create_index(
            "ix_service_order_ordering_status", ["ordering_institution_id", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_service_order_patient_ref"), ["patient_ref"], unique=False
        )
        batch_op.create_index(
            "ix_service_order_performing_status",
            ["performing_institution_id", "status"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_service_order_service_id"), ["service_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_service_order_status"), ["status"], unique=False)

    op.create_table(
        "referral",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("from_institution_id", sa.String(length=64), nullable=False),
        sa.Column("referred_by", sa.String(length=64), nullable=False),
        sa.Column("to_institution_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=True),
        sa.Column("department_code", sa.String(length=16), nullable=True),
        sa.Column("staff_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "priority",
            sa.Enum(
                "routine", "urgent", "asap", "stat", name="priority", native_enum=False, length=10
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "requested",
                "accepted",
                "declined",
                "booked",
                "attended",
                "report_returned",
                "cancelled",
                name="referralstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("book_from", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("book_until", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("appointment_id", sa.String(length=64), nullable=True),
        sa.Column("report_ref", sa.String(length=500), nullable=True),
        sa.Column("report_text", sa.Text(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column(
            "history",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "from_institution_id <> to_institution_id",
            name=op.f("ck_referral_referral_other_member"),
        ),
        sa.CheckConstraint(
            "service_id IS NOT NULL OR department_code IS NOT NULL OR staff_id IS NOT NULL",
            name=op.f("ck_referral_referral_target"),
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointment.id"],
            name=op.f("fk_referral_appointment_id_appointment"),
        ),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department_code.code"],
            name=op.f("fk_referral_department_code_department_code"),
        ),
        sa.ForeignKeyConstraint(
            ["from_institution_id"],
            ["institution.id"],
            name=op.f("fk_referral_from_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_referral_service_id_service")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["resource.id"], name=op.f("fk_referral_staff_id_resource")
        ),
        sa.ForeignKeyConstraint(
            ["to_institution_id"],
            ["institution.id"],
            name=op.f("fk_referral_to_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
        sa.UniqueConstraint("referred_by", "idempotency_key", name="uq_referral_idempotency"),
    )
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_referral_appointment_id"), ["appointment_id"], unique=False
        )
        batch_op.create_index(
            "ix_referral_from_status", ["from_institution_id", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_referral_patient_ref"), ["patient_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_referral_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_referral_to_status", ["to_institution_id", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("referral", schema=None) as batch_op:
        batch_op.drop_index("ix_referral_to_status")
        batch_op.drop_index(batch_op.f("ix_referral_status"))
        batch_op.drop_index(batch_op.f("ix_referral_patient_ref"))
        batch_op.drop_index("ix_referral_from_status")
        batch_op.drop_index(batch_op.f("ix_referral_appointment_id"))

    op.drop_table("referral")
    with op.batch_alter_table("service_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_order_status"))
        batch_op.drop_index(batch_op.f("ix_service_order_service_id"))
        batch_op.drop_index("ix_service_order_performing_status")
        batch_op.drop_index(batch_op.f("ix_service_order_patient_ref"))
        batch_op.drop_index("ix_service_order_ordering_status")
        batch_op.drop_index(batch_op.f("ix_service_order_appointment_id"))

    op.drop_table("service_order")
