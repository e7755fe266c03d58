"""quality

Revision ID: 0300
Revises: 0006
Create Date: 2026-11-28 21:20:47.724037
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import carepool.core.db

revision: str = "0300"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_schedule",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("feed", sa.String(length=40), nullable=False),
        sa.Column("every_minutes", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_schedule")),
        sa.UniqueConstraint("institution_id", "feed", name="uq_feed_schedule_member_feed"),
    )
    op.create_table(
        "quality_alert",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "score-drop",
                "feed-late",
                "member-stale",
                name="alertkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open", "acknowledged", "resolved", name="alertstatus", native_enum=False, length=14
            ),
            nullable=False,
        ),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_alert")),
    )
    with op.batch_alter_table("quality_alert", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quality_alert_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(
            "ix_quality_alert_open", ["kind", "institution_id", "key", "status"], unique=False
        )

    op.create_table(
        "quality_run",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "succeeded",
                "failed",
                name="qualityrunstatus",
                native_enum=False,
                length=12,
            ),
            nullable=False,
        ),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("started_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", carepool.core.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("as_of", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("checks_total", sa.Integer(), nullable=False),
        sa.Column("checks_done", sa.Integer(), nullable=False),
        sa.Column("checks_failed", sa.Integer(), nullable=False),
        sa.Column(
            "settings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_run")),
    )
    with op.batch_alter_table("quality_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quality_run_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "quality_threshold",
        sa.Column("check_id", sa.String(length=80), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("note", sa.String(length=300), nullable=False),
        sa.Column("updated_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("check_id", name=op.f("pk_quality_threshold")),
    )
    op.create_table(
        "quality_result",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("check_id", sa.String(length=80), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("subcategory", sa.String(length=20), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("failing", sa.BigInteger(), nullable=False),
        sa.Column("denominator", sa.BigInteger(), nullable=False),
        sa.Column("percent", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column(
            "sample",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["quality_run.id"],
            name=op.f("fk_quality_result_run_id_quality_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_result")),
        sa.UniqueConstraint("run_id", "check_id", "institution_id", name="uq_quality_result_key"),
    )
    with op.batch_alter_table("quality_result", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quality_result_member_check", ["institution_id", "check_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_quality_result_run_id"), ["run_id"], unique=False)

    op.create_table(
        "quality_score",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("measured_at", carepool.core.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("checks_passed", sa.Integer(), nullable=False),
        sa.Column("checks_total", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["quality_run.id"],
            name=op.f("fk_quality_score_run_id_quality_run"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_score")),
        sa.UniqueConstraint("run_id", "institution_id", "category", name="uq_quality_score_key"),
    )
    with op.batch_alter_table("quality_score", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quality_score_member_time",
            ["institution_id", "category", "measured_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_quality_score_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quality_score", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quality_score_run_id"))
        batch_op.drop_index("ix_quality_score_member_time")

    op.drop_table("quality_score")
    with op.batch_alter_table("quality_result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quality_result_run_id"))
        batch_op.drop_index("ix_quality_result_member_check")

    op.drop_table("quality_result")
    op.drop_table("quality_threshold")
    with op.batch_alter_table("quality_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quality_run_institution_id"))

    op.drop_table("quality_run")
    with op.batch_alter_table("quality_alert", schema=None) as batch_op:
        batch_op.drop_index("ix_quality_alert_open")
        batch_op.drop_index(batch_op.f("ix_quality_alert_institution_id"))

    op.drop_table("quality_alert")
    op.drop_table("feed_schedule")
