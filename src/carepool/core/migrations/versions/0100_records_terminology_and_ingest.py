"""records, terminology and ingest

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-28 20:47:36.697898
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0100"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letter",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("position", sa.String(length=300), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "resolved",
                "discarded",
                name="deadletterstatus",
                native_enum=False,
                length=12,
            ),
            nullable=False,
        ),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("retried_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_run", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
        sa.UniqueConstraint("institution_id", "format", "raw_hash", name="uq_dead_letter_raw"),
    )
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letter_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dead_letter_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dead_letter_status"), ["status"], unique=False)

    op.create_table(
        "ingest_run",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running", "succeeded", "failed", name="runstatus", native_enum=False, length=12
            ),
            nullable=False,
        ),
        sa.Column(
            "inputs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("started_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("stubs", sa.Integer(), nullable=False),
        sa.Column(
            "by_kind",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("units_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_run")),
    )
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_run_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "patient",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("id_system", sa.String(length=200), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("family", sa.String(length=100), nullable=False),
        sa.Column("given", sa.String(length=100), nullable=False),
        sa.Column("name_pinyin", sa.String(length=300), nullable=False),
        sa.Column(
            "sex",
            sa.Enum("male", "female", "other", "unknown", name="sex", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("national_id", sa.String(length=40), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("address", sa.String(length=400), nullable=False),
        sa.Column("deceased", sa.Boolean(), nullable=False),
        sa.Column("stub", sa.Boolean(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_patient_natural_key")),
    )
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_patient_name_pinyin"), ["name_pinyin"], unique=False)
        batch_op.create_index(batch_op.f("ix_patient_national_id"), ["national_id"], unique=False)

    op.create_table(
        "provenance",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("record_type", sa.String(length=30), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("feed", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("message", sa.String(length=300), nullable=False),
        sa.Column("position", sa.String(length=200), nullable=False),
        sa.Column("received_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("original", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provenance")),
    )
    with op.batch_alter_table("provenance", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provenance_record_id"), ["record_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_provenance_run_id"), ["run_id"], unique=False)

    op.create_table(
        "term_map",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "kind",
            sa.Enum("code", "unit", "department", name="mapkind", native_enum=False, length=12),
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_map")),
        sa.UniqueConstraint("kind", "scope", name="uq_term_map_kind_scope"),
    )
    op.create_table(
        "unmapped_term",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "kind",
            sa.Enum("code", "unit", "department", name="mapkind", native_enum=False, length=12),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=200), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("term", sa.String(length=200), nullable=False),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum("open", "mapped", "ignored", name="termstatus", native_enum=False, length=10),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unmapped_term")),
        sa.UniqueConstraint(
            "kind", "institution_id", "source_system", "match", "term", name="uq_unmapped_term_key"
        ),
    )
    with op.batch_alter_table("unmapped_term", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unmapped_term_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "encounter",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("id_system", sa.String(length=200), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column(
            "class",
            sa.Enum(
                "inpatient",
                "outpatient",
                "emergency",
                "virtual",
                "home",
                "other",
                name="encounterclass",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "planned",
                "arrived",
                "in-progress",
                "finished",
                "cancelled",
                "unknown",
                name="encounterstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("start_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("type_text", sa.String(length=200), nullable=False),
        sa.Column("department_text", sa.String(length=200), nullable=False),
        sa.Column("department_code", sa.String(length=16), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=False),
        sa.Column("last_event", sa.String(length=20), nullable=False),
        sa.Column(
            "flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_encounter_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encounter")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_encounter_natural_key")),
    )
    with op.batch_alter_table("encounter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_encounter_department_code"), ["department_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_encounter_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_encounter_patient_id"), ["patient_id"], unique=False)

    op.create_table(
        "other_record",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=80), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_other_record_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_other_record")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_other_record_natural_key")),
    )
    with op.batch_alter_table("other_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_other_record_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_other_record_kind"), ["kind"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_other_record_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "patient_identifier",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_patient_identifier_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identifier")),
        sa.UniqueConstraint("patient_id", "system", "value", name="uq_patient_identifier_value"),
    )
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_identifier_patient_id"), ["patient_id"], unique=False
        )
        batch_op.create_index(
            "ix_patient_identifier_system_value", ["system", "value"], unique=False
        )

    op.create_table(
        "term_mapping",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("map_id", sa.Integer(), nullable=False),
        sa.Column("match", sa.String(length=8), nullable=False),
        sa.Column("source_system", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("source_display", sa.String(length=300), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("valid_from", sa.Integer(), nullable=False),
        sa.Column("valid_to", sa.Integer(), nullable=True),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["map_id"],
            ["term_map.id"],
            name=op.f("fk_term_mapping_map_id_term_map"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_term_mapping")),
    )
    with op.batch_alter_table("term_mapping", schema=None) as batch_op:
        batch_op.create_index(
            "ix_term_mapping_lookup", ["map_id", "source_system", "source"], unique=False
        )

    op.create_table(
        "clinical_order",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("id_system", sa.String(length=200), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column("placer_number", sa.String(length=100), nullable=False),
        sa.Column("filler_number", sa.String(length=100), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "active",
                "on-hold",
                "revoked",
                "completed",
                "entered-in-error",
                "unknown",
                name="orderstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("loinc_code", sa.String(length=20), nullable=True),
        sa.Column("original_system", sa.String(length=200), nullable=False),
        sa.Column("original_code", sa.String(length=200), nullable=False),
        sa.Column("original_text", sa.String(length=300), nullable=False),
        sa.Column("priority", sa.String(length=20), nullable=False),
        sa.Column("ordered_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounter.id"],
            name=op.f("fk_clinical_order_encounter_id_encounter"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_clinical_order_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_order")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_clinical_order_natural_key")),
    )
    with op.batch_alter_table("clinical_order", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinical_order_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_clinical_order_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "diagnostic_report",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("id_system", sa.String(length=200), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
                name="resultstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("loinc_code", sa.String(length=20), nullable=True),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("original_system", sa.String(length=200), nullable=False),
        sa.Column("original_code", sa.String(length=200), nullable=False),
        sa.Column("original_text", sa.String(length=300), nullable=False),
        sa.Column("category", sa.String(length=60), nullable=False),
        sa.Column("effective_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("issued_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("conclusion", sa.Text(), nullable=False),
        sa.Column(
            "flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounter.id"],
            name=op.f("fk_diagnostic_report_encounter_id_encounter"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_diagnostic_report_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_diagnostic_report")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_diagnostic_report_natural_key")),
    )
    with op.batch_alter_table("diagnostic_report", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_diagnostic_report_effective_at"), ["effective_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_diagnostic_report_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_diagnostic_report_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_diagnostic_report_loinc_code"), ["loinc_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_diagnostic_report_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "observation",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("natural_key", sa.String(length=500), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("id_system", sa.String(length=200), nullable=False),
        sa.Column("local_id", sa.String(length=200), nullable=True),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column("report_id", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "registered",
                "partial",
                "preliminary",
                "final",
                "amended",
                "corrected",
                "cancelled",
                "entered-in-error",
                "unknown",
                name="resultstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("category", sa.String(length=60), nullable=False),
        sa.Column("loinc_code", sa.String(length=20), nullable=True),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=60), nullable=True),
        sa.Column("ref_low", sa.Float(), nullable=True),
        sa.Column("ref_high", sa.Float(), nullable=True),
        sa.Column("original_system", sa.String(length=200), nullable=False),
        sa.Column("original_code", sa.String(length=200), nullable=False),
        sa.Column("original_text", sa.String(length=300), nullable=False),
        sa.Column(
            "codings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("value_type", sa.String(length=20), nullable=False),
        sa.Column("original_value", sa.Text(), nullable=False),
        sa.Column("original_unit", sa.String(length=100), nullable=False),
        sa.Column("original_number", sa.Float(), nullable=True),
        sa.Column("original_ref_low", sa.Float(), nullable=True),
        sa.Column("original_ref_high", sa.Float(), nullable=True),
        sa.Column("reference_text", sa.String(length=200), nullable=False),
        sa.Column("value_code", sa.String(length=100), nullable=False),
        sa.Column("value_code_system", sa.String(length=200), nullable=False),
        sa.Column("interpretation", sa.String(length=20), nullable=False),
        sa.Column("effective_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("issued_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "flags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("standardised_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["encounter_id"],
            ["encounter.id"],
            name=op.f("fk_observation_encounter_id_encounter"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patient.id"],
            name=op.f("fk_observation_patient_id_patient"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["diagnostic_report.id"],
            name=op.f("fk_observation_report_id_diagnostic_report"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation")),
        sa.UniqueConstraint("natural_key", name=op.f("uq_observation_natural_key")),
    )
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_observation_encounter_id"), ["encounter_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_observation_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_observation_loinc_code"), ["loinc_code"], unique=False)
        batch_op.create_index(
            "ix_observation_patient_code_time",
            ["patient_id", "loinc_code", "effective_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_observation_report_id"), ["report_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("observation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_observation_report_id"))
        batch_op.drop_index("ix_observation_patient_code_time")
        batch_op.drop_index(batch_op.f("ix_observation_loinc_code"))
        batch_op.drop_index(batch_op.f("ix_observation_institution_id"))
        batch_op.drop_index(batch_op.f("ix_observation_encounter_id"))

    op.drop_table("observation")
    with op.batch_alter_table("diagnostic_report", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_diagnostic_report_patient_id"))
        batch_op.drop_index(batch_op.f("ix_diagnostic_report_loinc_code"))
        batch_op.drop_index(batch_op.f("ix_diagnostic_report_institution_id"))
        batch_op.drop_index(batch_op.f("ix_diagnostic_report_encounter_id"))
        batch_op.drop_index(batch_op.f("ix_diagnostic_report_effective_at"))

    op.drop_table("diagnostic_report")
    with op.batch_alter_table("clinical_order", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinical_order_patient_id"))
        batch_op.drop_index(batch_op.f("ix_clinical_order_institution_id"))

    op.drop_table("clinical_order")
    with op.batch_alter_table("term_mapping", schema=None) as batch_op:
        batch_op.drop_index("ix_term_mapping_lookup")

    op.drop_table("term_mapping")
    with op.batch_alter_table("patient_identifier", schema=None) as batch_op:
        batch_op.drop_index("ix_patient_identifier_system_value")
        batch_op.drop_index(batch_op.f("ix_patient_identifier_patient_id"))

    op.drop_table("patient_identifier")
    with op.batch_alter_table("other_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_other_record_patient_id"))
        batch_op.drop_index(batch_op.f("ix_other_record_kind"))
        batch_op.drop_index(batch_op.f("ix_other_record_institution_id"))

    op.drop_table("other_record")
    with op.batch_alter_table("encounter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_encounter_patient_id"))
        batch_op.drop_index(batch_op.f("ix_encounter_institution_id"))
        batch_op.drop_index(batch_op.f("ix_encounter_department_code"))

    op.drop_table("encounter")
    with op.batch_alter_table("unmapped_term", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unmapped_term_institution_id"))

    op.drop_table("unmapped_term")
    op.drop_table("term_map")
    with op.batch_alter_table("provenance", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provenance_run_id"))
        batch_op.drop_index(batch_op.f("ix_provenance_record_id"))

    op.drop_table("provenance")
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_national_id"))
        batch_op.drop_index(batch_op.f("ix_patient_name_pinyin"))
        batch_op.drop_index(batch_op.f("ix_patient_institution_id"))

    op.drop_table("patient")
    with op.batch_alter_table("ingest_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_run_institution_id"))

    op.drop_table("ingest_run")
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letter_status"))
        batch_op.drop_index(batch_op.f("ix_dead_letter_run_id"))
        batch_op.drop_index(batch_op.f("ix_dead_letter_institution_id"))

    op.drop_table("dead_letter")
