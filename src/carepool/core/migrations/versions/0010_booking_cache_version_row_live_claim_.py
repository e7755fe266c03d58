"""booking: cache version row, live-claim and hold indexes

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-28 23:28:19.576862
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table whose rows the booking pool caches per process (docs/decisions/0009). A write to
# any of them, by any code or by hand, gives `booking_cache_version.version` a new value in the
# same transaction; readers compare it with the value their cache was built under.
CACHED_TABLES = (
    "consortium",
    "institution",
    "resource",
    "calendar_rule",
    "calendar_exception",
    "service",
    "service_requirement",
    "service_offering",
    "booking_policy",
    "booking_quota",
)

# PostgreSQL: once per statement; the writing transaction's id is new for every transaction.
_PG_FUNCTION = """
CREATE FUNCTION booking_cache_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO booking_cache_version (id, version) VALUES (1, txid_current())
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER trg_booking_cache_{table}
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION booking_cache_bump()
"""
# SQLite: row triggers only; a random 64-bit value (one writer at a time, so no lost update).
_SQLITE_TRIGGER = """
CREATE TRIGGER trg_booking_cache_{table}_{event}
AFTER {event} ON {table}
BEGIN
    INSERT INTO booking_cache_version (id, version) VALUES (1, random())
    ON CONFLICT (id) DO UPDATE SET version = excluded.version;
END
"""
_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    op.create_table(
        "booking_cache_version",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_booking_cache_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_cache_version")),
    )
    with op.batch_alter_table("resource_claim", schema=None) as batch_op:
        batch_op.create_index(
            "ix_resource_claim_holds",
            ["resource_id", "expires_at"],
            unique=False,
            postgresql_where=sa.text("active AND expires_at IS NOT NULL"),
            sqlite_where=sa.text("active AND expires_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_resource_claim_live",
            ["resource_id", "end_at"],
            unique=False,
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("INSERT INTO booking_cache_version (id, version) VALUES (1, txid_current())")
        op.execute(_PG_FUNCTION)
        for table in CACHED_TABLES:
            op.execute(_PG_TRIGGER.format(table=table))
    else:
        op.execute("INSERT INTO booking_cache_version (id, version) VALUES (1, random())")
        for table in CACHED_TABLES:
            for event in _EVENTS:
                op.execute(_SQLITE_TRIGGER.format(table=table, event=event))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in CACHED_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS trg_booking_cache_{table} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS booking_cache_bump()")
    else:
        for table in CACHED_TABLES:
            for event in _EVENTS:
                op.execute(f"DROP TRIGGER IF EXISTS trg_booking_cache_{table}_{event}")
    with op.batch_alter_table("resource_claim", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_resource_claim_live",
            postgresql_where=sa.text("active"),
            sqlite_where=sa.text("active"),
        )
        batch_op.drop_index(
            "ix_resource_claim_holds",
            postgresql_where=sa.text("active AND expires_at IS NOT NULL"),
            sqlite_where=sa.text("active AND expires_at IS NOT NULL"),
        )

    op.drop_table("booking_cache_version")
