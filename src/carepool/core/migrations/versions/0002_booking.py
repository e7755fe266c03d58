"""booking: resource claims (never overlapping), appointments, policies and quotas

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Two active claims on the same resource lane must not overlap in time. PostgreSQL enforces it
# with an exclusion constraint; SQLite (one writer at a time) with triggers that abort the write.
_SQLITE_OVERLAP = """
CREATE TRIGGER trg_resource_claim_no_overlap_{event}
BEFORE {event} ON resource_claim
WHEN NEW.active
BEGIN
    SELECT RAISE(ABORT, 'resource_claim_overlap')
    WHERE EXISTS (
        SELECT 1 FROM resource_claim AS c
        WHERE c.resource_id = NEW.resource_id AND c.lane = NEW.lane AND c.active
          AND c.id IS NOT NEW.id
          AND c.start_at < NEW.end_at AND c.end_at > NEW.start_at
    );
END
"""


def upgrade() -> None:
    op.create_table(
        "appointment",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("requester_institution_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("patient_ref", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("referral_id", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "held",
                "booked",
                "arrived",
                "fulfilled",
                "cancelled",
                "noshow",
                name="appointmentstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("start_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("hold_expires_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "resource_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("quota_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_appointment_appointment_positive")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_appointment_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["requester_institution_id"],
            ["institution.id"],
            name=op.f("fk_appointment_requester_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_appointment_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment")),
        sa.UniqueConstraint("requested_by", "idempotency_key", name="uq_appointment_idempotency"),
    )
    op.create_index(
        "ix_appointment_member_start", "appointment", ["institution_id", "start_at"], unique=False
    )
    op.create_index(
        op.f("ix_appointment_patient_ref"), "appointment", ["patient_ref"], unique=False
    )
    op.create_index(
        op.f("ix_appointment_referral_id"), "appointment", ["referral_id"], unique=False
    )
    op.create_index(
        op.f("ix_appointment_requester_institution_id"),
        "appointment",
        ["requester_institution_id"],
        unique=False,
    )
    op.create_index(op.f("ix_appointment_service_id"), "appointment", ["service_id"], unique=False)
    op.create_index(op.f("ix_appointment_status"), "appointment", ["status"], unique=False)
    op.create_table(
        "booking_policy",
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("hold_minutes", sa.Integer(), nullable=False),
        sa.Column("overbook_lanes", sa.Integer(), nullable=False),
        sa.Column("slot_step_minutes", sa.Integer(), nullable=True),
        sa.Column("min_notice_minutes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_booking_policy_service_id_service")
        ),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_booking_policy")),
    )
    op.create_table(
        "booking_quota",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column(
            "reserved_for_kinds",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "reserved_for_institutions",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("release_hours", sa.Integer(), nullable=False),
        sa.CheckConstraint("share > 0 AND share <= 1", name=op.f("ck_booking_quota_share_range")),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_booking_quota_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["service.id"], name=op.f("fk_booking_quota_service_id_service")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_quota")),
    )
    op.create_index(
        op.f("ix_booking_quota_service_id"), "booking_quota", ["service_id"], unique=False
    )
    op.create_table(
        "booking_quota_usage",
        sa.Column("quota_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("used_minutes", sa.Integer(), nullable=False),
        sa.Column("limit_minutes", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "used_minutes >= 0", name=op.f("ck_booking_quota_usage_used_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["quota_id"],
            ["booking_quota.id"],
            name=op.f("fk_booking_quota_usage_quota_id_booking_quota"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("quota_id", "day", name=op.f("pk_booking_quota_usage")),
    )
    op.create_table(
        "resource_claim",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.Integer(), nullable=False),
        sa.Column("start_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "appointment",
                "admission",
                "surgery",
                "block",
                name="claimpurpose",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("expires_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_resource_claim_claim_positive")),
        sa.CheckConstraint("lane >= 0", name=op.f("ck_resource_claim_lane_non_negative")),
        sa.ForeignKeyConstraint(
            ["resource_id"], ["resource.id"], name=op.f("fk_resource_claim_resource_id_resource")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_claim")),
    )
    op.create_index(
        "ix_resource_claim_lookup",
        "resource_claim",
        ["resource_id", "start_at", "end_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_resource_claim_owner_id"), "resource_claim", ["owner_id"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE resource_claim ADD CONSTRAINT ex_resource_claim_overlap "
            "EXCLUDE USING gist (resource_id WITH =, lane WITH =, "
            "tstzrange(start_at, end_at, '[)') WITH &&) WHERE (active)"
        )
    else:
        op.execute(_SQLITE_OVERLAP.format(event="INSERT"))
        op.execute(_SQLITE_OVERLAP.format(event="UPDATE"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_resource_claim_no_overlap_INSERT")
        op.execute("DROP TRIGGER IF EXISTS trg_resource_claim_no_overlap_UPDATE")

    op.drop_index(op.f("ix_resource_claim_owner_id"), table_name="resource_claim")
    op.drop_index("ix_resource_claim_lookup", table_name="resource_claim")
    op.drop_table("resource_claim")
    op.drop_table("booking_quota_usage")
    op.drop_index(op.f("ix_booking_quota_service_id"), table_name="booking_quota")
    op.drop_table("booking_quota")
    op.drop_table("booking_policy")
    op.drop_index(op.f("ix_appointment_status"), table_name="appointment")
    op.drop_index(op.f("ix_appointment_service_id"), table_name="appointment")
    op.drop_index(op.f("ix_appointment_requester_institution_id"), table_name="appointment")
    op.drop_index(op.f("ix_appointment_referral_id"), table_name="appointment")
    op.drop_index(op.f("ix_appointment_patient_ref"), table_name="appointment")
    op.drop_index("ix_appointment_member_start", table_name="appointment")
    op.drop_table("appointment")
