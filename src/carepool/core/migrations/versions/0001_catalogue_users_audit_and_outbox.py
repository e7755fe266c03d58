"""catalogue, users, audit and outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-28 20:25:12.911528
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "action",
            sa.Enum("C", "R", "U", "D", "E", name="auditaction", native_enum=False),
            nullable=False,
        ),
        sa.Column(
            "outcome",
            sa.Enum(
                "success", "denied", "failed", name="auditoutcome", native_enum=False, length=10
            ),
            nullable=False,
        ),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("agent_institution", sa.String(length=64), nullable=True),
        sa.Column("entity_type", sa.String(length=60), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=True),
        sa.Column("entity_institution", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_agent"), ["agent"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_event_entity_institution"), ["entity_institution"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_event_recorded_at"), ["recorded_at"], unique=False
        )

    op.create_table(
        "consortium",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consortium")),
    )
    op.create_table(
        "department_code",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_department_code")),
    )
    op.create_table(
        "event_outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("occurred_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=80), nullable=False),
        sa.Column("entity_type", sa.String(length=60), nullable=False),
        sa.Column("entity_id", sa.String(length=120), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_outbox_type"), ["type"], unique=False)

    op.create_table(
        "institution",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "general_hospital",
                "branch_hospital",
                "township_health_centre",
                "village_clinic",
                name="institutionkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "grade",
            sa.Enum(
                "3A",
                "3B",
                "2A",
                "2B",
                "1",
                "unrated",
                name="institutiongrade",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["institution.id"], name=op.f("fk_institution_parent_id_institution")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institution")),
    )
    with op.batch_alter_table("institution", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_institution_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "app_user",
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "consortium_admin",
                "member_admin",
                "clinician",
                "bed_manager",
                "theatre_coordinator",
                "lab_coordinator",
                "administrator",
                "data_steward",
                "viewer",
                name="role",
                native_enum=False,
                length=40,
            ),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_app_user_institution_id_institution"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_app_user")),
    )
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app_user_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "campus",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_campus_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campus")),
    )
    with op.batch_alter_table("campus", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_campus_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "service",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column(
            "category",
            sa.Enum(
                "consultation",
                "imaging",
                "lab",
                "procedure",
                "surgery",
                "admission",
                name="servicecategory",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("department_code", sa.String(length=16), nullable=True),
        sa.Column(
            "codes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("duration_min", sa.Integer(), nullable=False),
        sa.Column("preparation_min", sa.Integer(), nullable=False),
        sa.Column("turnover_min", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "orderable_by_roles",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "orderable_by_kinds",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["department_code"],
            ["department_code.code"],
            name=op.f("fk_service_department_code_department_code"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service")),
    )
    op.create_table(
        "api_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column(
            "scopes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column("issued_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"],
            ["app_user.username"],
            name=op.f("fk_api_token_username_app_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_api_token")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_username"), ["username"], unique=False)

    op.create_table(
        "department",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("campus_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("local_name", sa.String(length=200), nullable=False),
        sa.Column("local_name_zh", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["campus_id"], ["campus.id"], name=op.f("fk_department_campus_id_campus")
        ),
        sa.ForeignKeyConstraint(
            ["code"], ["department_code.code"], name=op.f("fk_department_code_department_code")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_department_institution_id_institution"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_department")),
    )
    with op.batch_alter_table("department", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_department_campus_id"), ["campus_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_department_code"), ["code"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_department_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "service_offering",
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_service_offering_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_service_offering_service_id_service"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("service_id", "institution_id", name=op.f("pk_service_offering")),
    )
    op.create_table(
        "service_requirement",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "bed",
                "room",
                "theatre",
                "modality",
                "lab_section",
                "analyser",
                "staff",
                name="resourcekind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("type_code", sa.String(length=40), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "surgeon",
                "anaesthetist",
                "physician",
                "nurse",
                "technician",
                name="staffrole",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("min_skill", sa.Integer(), nullable=True),
        sa.Column("specialty", sa.String(length=16), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.CheckConstraint("count >= 1", name=op.f("ck_service_requirement_count_positive")),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["service.id"],
            name=op.f("fk_service_requirement_service_id_service"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_requirement")),
        sa.UniqueConstraint("service_id", "position", name="uq_service_requirement_position"),
    )
    with op.batch_alter_table("service_requirement", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_requirement_service_id"), ["service_id"], unique=False
        )

    op.create_table(
        "ward",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "general",
                "icu",
                "day_surgery",
                "emergency",
                "outpatient",
                "theatre_suite",
                "imaging",
                "laboratory",
                name="wardkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("building", sa.String(length=100), nullable=False),
        sa.Column("floor", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_ward_department_id_department")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"], ["institution.id"], name=op.f("fk_ward_institution_id_institution")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ward")),
    )
    with op.batch_alter_table("ward", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ward_department_id"), ["department_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ward_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "resource",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "bed",
                "room",
                "theatre",
                "modality",
                "lab_section",
                "analyser",
                "staff",
                name="resourcekind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "in_service",
                "maintenance",
                "closed",
                name="resourcestatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("campus_id", sa.String(length=64), nullable=True),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("ward_id", sa.String(length=64), nullable=True),
        sa.Column("room_id", sa.String(length=64), nullable=True),
        sa.Column(
            "gender_policy",
            sa.Enum(
                "mixed",
                "female",
                "male",
                "same_sex_room",
                name="genderpolicy",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column(
            "features",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column(
            "role",
            sa.Enum(
                "surgeon",
                "anaesthetist",
                "physician",
                "nurse",
                "technician",
                name="staffrole",
                native_enum=False,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("skill_level", sa.Integer(), nullable=True),
        sa.Column(
            "specialties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("license_no", sa.String(length=40), nullable=False),
        sa.Column("manufacturer", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.CheckConstraint(
            "capacity IS NULL OR capacity >= 0", name=op.f("ck_resource_capacity_non_negative")
        ),
        sa.CheckConstraint(
            "skill_level IS NULL OR skill_level >= 0", name=op.f("ck_resource_skill_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["campus_id"], ["campus.id"], name=op.f("fk_resource_campus_id_campus")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["department.id"], name=op.f("fk_resource_department_id_department")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institution.id"],
            name=op.f("fk_resource_institution_id_institution"),
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["resource.id"], name=op.f("fk_resource_room_id_resource")
        ),
        sa.ForeignKeyConstraint(["ward_id"], ["ward.id"], name=op.f("fk_resource_ward_id_ward")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource")),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_campus_id"), ["campus_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resource_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resource_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_resource_kind"), ["kind"], unique=False)
        batch_op.create_index(batch_op.f("ix_resource_room_id"), ["room_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_resource_type_code"), ["type_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_resource_ward_id"), ["ward_id"], unique=False)

    op.create_table(
        "calendar_exception",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "maintenance",
                "closure",
                "leave",
                "extra",
                name="exceptionkind",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("start", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("end", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint('"end" > start', name=op.f("ck_calendar_exception_end_after_start")),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["resource.id"],
            name=op.f("fk_calendar_exception_resource_id_resource"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_exception")),
    )
    with op.batch_alter_table("calendar_exception", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_exception_resource_id"), ["resource_id"], unique=False
        )

    op.create_table(
        "calendar_rule",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("cycle_days", sa.Integer(), nullable=False),
        sa.Column("anchor", sa.Date(), nullable=False),
        sa.Column(
            "days",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("start", sa.Time(), nullable=False),
        sa.Column("end", sa.Time(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.CheckConstraint("cycle_days >= 1", name=op.f("ck_calendar_rule_cycle_positive")),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["resource.id"],
            name=op.f("fk_calendar_rule_resource_id_resource"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_rule")),
    )
    with op.batch_alter_table("calendar_rule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_rule_resource_id"), ["resource_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_rule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_rule_resource_id"))

    op.drop_table("calendar_rule")
    with op.batch_alter_table("calendar_exception", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_exception_resource_id"))

    op.drop_table("calendar_exception")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_ward_id"))
        batch_op.drop_index(batch_op.f("ix_resource_type_code"))
        batch_op.drop_index(batch_op.f("ix_resource_room_id"))
        batch_op.drop_index(batch_op.f("ix_resource_kind"))
        batch_op.drop_index(batch_op.f("ix_resource_institution_id"))
        batch_op.drop_index(batch_op.f("ix_resource_department_id"))
        batch_op.drop_index(batch_op.f("ix_resource_campus_id"))

    op.drop_table("resource")
    with op.batch_alter_table("ward", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ward_institution_id"))
        batch_op.drop_index(batch_op.f("ix_ward_department_id"))

    op.drop_table("ward")
    with op.batch_alter_table("service_requirement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_requirement_service_id"))

    op.drop_table("service_requirement")
    op.drop_table("service_offering")
    with op.batch_alter_table("department", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_department_institution_id"))
        batch_op.drop_index(batch_op.f("ix_department_code"))
        batch_op.drop_index(batch_op.f("ix_department_campus_id"))

    op.drop_table("department")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_username"))

    op.drop_table("api_token")
    op.drop_table("service")
    with op.batch_alter_table("campus", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campus_institution_id"))

    op.drop_table("campus")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_user_institution_id"))

    op.drop_table("app_user")
    with op.batch_alter_table("institution", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_institution_parent_id"))

    op.drop_table("institution")
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_outbox_type"))

    op.drop_table("event_outbox")
    op.drop_table("department_code")
    op.drop_table("consortium")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_recorded_at"))
        batch_op.drop_index(batch_op.f("ix_audit_event_entity_institution"))
        batch_op.drop_index(batch_op.f("ix_audit_event_agent"))

    op.drop_table("audit_event")
