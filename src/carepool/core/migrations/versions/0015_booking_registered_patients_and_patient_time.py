"""booking: bookings name a registered patient; the patient's own time

Revision ID: 0015
Revises: 0012
Create Date: 2026-12-08 04:45:00

Appointments, admissions, surgery cases, referrals and orders get `patient_id`, the records
Patient they are for (nullable: rows booked before keep their free-text `patient_ref` only).
`patient_claim` holds each booking's share of the patient's own time; the database refuses two
active exclusive claims of one patient that overlap in the same lane, or in different lanes at
different members (PostgreSQL exclusion constraints; SQLite triggers). `booking_policy` gets
`allow_patient_overlap`. `booking_create_appointment` gets a new version that also inserts the
appointment's patient claim (docs/decisions/0013).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from carepool.core.db import UtcDateTime

revision: str = "0015"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BOOKINGS = ("appointment", "admission", "surgery_case", "referral", "service_order")

_SQLITE_CLASH = """
CREATE TRIGGER trg_patient_claim_no_clash_{event}
BEFORE {event} ON patient_claim
WHEN NEW.active AND NEW.exclusive
BEGIN
    SELECT RAISE(ABORT, 'patient_claim_clash')
    WHERE EXISTS (
        SELECT 1 FROM patient_claim AS c
        WHERE c.patient_key = NEW.patient_key AND c.active AND c.exclusive
          AND c.id IS NOT NEW.id
          AND c.start_at < NEW.end_at AND c.end_at > NEW.start_at
          AND (c.lane = NEW.lane OR c.institution_id <> NEW.institution_id)
    );
END
"""

# As 0012, plus: with p->'patient' (a patient_claim row's values; without `patient_key` the
# reference is checked first against p->>'caller_member' / p->>'see_all', answering
# {"status": "unknown_patient"} when the caller may not book for it), lapsed holds of the patient
# send the booking to the ORM path ("lapsed"), and a claim the exclusion constraints refuse
# answers {"status": "patient_busy"} (the caller raises and rolls back). The function returns
# the patient key it used as "patient_key".
_FUNCTION = """
CREATE OR REPLACE FUNCTION booking_create_appointment(
    p jsonb,             -- start, end, lanes, now, version, claim{}, patient{}, appointment{},
                         -- audit{}, event{}
    p_counts int[],      -- units each requirement needs
    p_candidates text[], -- every requirement's candidates in order, requirement after requirement
    p_requirement int[], -- the requirement (0-based) of each candidate
    p_everyone text[],   -- every candidate once (their lapsed holds send the booking to the ORM)
    p_open text[]        -- the candidates whose calendars cover the block
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    sep CONSTANT text := chr(31);
    v_start timestamptz := (p->>'start')::timestamptz;
    v_end timestamptz := (p->>'end')::timestamptz;
    v_now timestamptz := (p->>'now')::timestamptz;
    v_lanes int := (p->>'lanes')::int;
    v_owner text := p->'claim'->>'owner_id';
    v_purpose text := p->'claim'->>'purpose';
    v_expires timestamptz := (p->'claim'->>'expires_at')::timestamptz;
    v_busy text[];
    v_refused text[] := '{}';
    v_accepted text[];
    v_chosen_req int[] := '{}';
    v_chosen_rid text[] := '{}';
    v_pick_req int[];
    v_pick_rid text[];
    v_pick_lane int[];
    v_taken text[];
    v_want int;
    v_lane int;
    v_rid text;
    v_final text[] := '{}';
    v_resources jsonb;
    v_patient jsonb := nullif(p->'patient', 'null'::jsonb);
    v_patient_claim bigint;
    v_member text;
    v_person text;
BEGIN
    IF p->>'version' IS NOT NULL AND (
        SELECT v.version FROM booking_cache_version v WHERE v.id = 1
    ) IS DISTINCT FROM (p->>'version')::bigint THEN
        RETURN jsonb_build_object('status', 'stale');
    END IF;
    IF EXISTS (
        SELECT 1 FROM resource_claim c
        WHERE c.resource_id = ANY (p_everyone) AND c.active
          AND c.expires_at IS NOT NULL AND c.expires_at <= v_now
    ) THEN
        RETURN jsonb_build_object('status', 'lapsed');
    END IF;
    -- The patient's own time (decision 0013), before the resources, as on the ORM path.
    IF v_patient IS NOT NULL AND v_patient->>'patient_key' IS NULL THEN
        -- The reference is checked here, not in a round trip of its own: the rule of
        -- booking.patients.resolve (a record of the caller's member, or one whose person has
        -- a record there; any for consortium-wide callers) on records' and identity's tables.
        SELECT pt.institution_id, l.person_id INTO v_member, v_person
        FROM patient pt LEFT JOIN identity_link l ON l.patient_id = pt.id
        WHERE pt.id = v_patient->>'patient_id';
        IF NOT FOUND OR NOT (
            (p->>'see_all')::boolean
            OR v_member = p->>'caller_member'
            OR EXISTS (
                SELECT 1 FROM identity_link o
                WHERE o.person_id = v_person AND o.institution_id = p->>'caller_member'
            )
        ) THEN
            RETURN jsonb_build_object('status', 'unknown_patient');
        END IF;
        v_patient := jsonb_set(
            v_patient, '{patient_key}', to_jsonb(coalesce(v_person, v_patient->>'patient_id'))
        );
    END IF;
    IF v_patient IS NOT NULL THEN
        IF EXISTS (
            SELECT 1 FROM patient_claim pc
            WHERE pc.patient_key = v_patient->>'patient_key' AND pc.active
              AND pc.expires_at IS NOT NULL AND pc.expires_at <= v_now
        ) THEN
            RETURN jsonb_build_object('status', 'lapsed');
        END IF;
        INSERT INTO patient_claim AS pc
            (patient_key, patient_id, lane, institution_id, start_at, end_at, purpose, owner_id,
             active, exclusive, expires_at)
        SELECT r.patient_key, r.patient_id, r.lane, r.institution_id, r.start_at, r.end_at,
               r.purpose, r.owner_id, r.active, r.exclusive, r.expires_at
        FROM jsonb_populate_record(NULL::patient_claim, v_patient) r
        ON CONFLICT DO NOTHING
        RETURNING pc.id INTO v_patient_claim;
        IF v_patient_claim IS NULL THEN
            RETURN jsonb_build_object(
                'status', 'patient_busy', 'patient_key', v_patient->>'patient_key'
            );
        END IF;
    END IF;
    v_busy := ARRAY(
        SELECT c.resource_id || sep || c.lane FROM resource_claim c
        WHERE c.resource_id = ANY (p_open) AND c.active
          AND c.end_at > v_start AND c.start_at < v_end
    );
    LOOP
        v_taken := v_chosen_rid;
        v_pick_req := '{}';
        v_pick_rid := '{}';
        v_pick_lane := '{}';
        FOR i IN 0 .. cardinality(p_counts) - 1 LOOP
            v_want := p_counts[i + 1] - coalesce(cardinality(array_positions(v_chosen_req, i)), 0);
            FOR j IN 1 .. coalesce(cardinality(p_candidates), 0) LOOP
                CONTINUE WHEN p_requirement[j] <> i;
                EXIT WHEN v_want = 0;
                v_rid := p_candidates[j];
                CONTINUE WHEN v_rid = ANY (v_taken) OR NOT (v_rid = ANY (p_open));
                v_lane := NULL;
                FOR k IN 0 .. v_lanes - 1 LOOP
                    IF NOT (v_rid || sep || k = ANY (v_busy))
                       AND NOT (v_rid || sep || k = ANY (v_refused)) THEN
                        v_lane := k;
                        EXIT;
                    END IF;
                END LOOP;
                CONTINUE WHEN v_lane IS NULL;
                v_pick_req := v_pick_req || i;
                v_pick_rid := v_pick_rid || v_rid;
                v_pick_lane := v_pick_lane || v_lane;
                v_taken := v_taken || v_rid;
                v_want := v_want - 1;
            END LOOP;
            IF v_want > 0 THEN
                RETURN jsonb_build_object(
                    'status', 'taken', 'requirement', i, 'available', p_counts[i + 1] - v_want
                );
            END IF;
        END LOOP;
        EXIT WHEN cardinality(v_pick_rid) = 0;
        WITH ins AS (
            INSERT INTO resource_claim AS c
                (resource_id, lane, start_at, end_at, purpose, owner_id, active, expires_at)
            SELECT u.r, u.l, v_start, v_end, v_purpose, v_owner, true, v_expires
            FROM unnest(v_pick_rid, v_pick_lane) AS u(r, l)
            ON CONFLICT DO NOTHING
            RETURNING c.resource_id, c.lane
        )
        SELECT coalesce(array_agg(ins.resource_id || sep || ins.lane), '{}')
        INTO v_accepted FROM ins;
        FOR j IN 1 .. cardinality(v_pick_rid) LOOP
            IF v_pick_rid[j] || sep || v_pick_lane[j] = ANY (v_accepted) THEN
                v_chosen_req := v_chosen_req || v_pick_req[j];
                v_chosen_rid := v_chosen_rid || v_pick_rid[j];
            ELSE  -- taken a moment ago by a concurrent booking: try the next lane or resource
                v_refused := v_refused || (v_pick_rid[j] || sep || v_pick_lane[j]);
            END IF;
        END LOOP;
    END LOOP;
    -- In requirement order, each requirement's resources in the order they were won.
    FOR i IN 0 .. cardinality(p_counts) - 1 LOOP
        FOR j IN 1 .. cardinality(v_chosen_rid) LOOP
            IF v_chosen_req[j] = i THEN
                v_final := v_final || v_chosen_rid[j];
            END IF;
        END LOOP;
    END LOOP;
    v_resources := to_jsonb(v_final);
    INSERT INTO appointment
    SELECT * FROM jsonb_populate_record(
        NULL::appointment, jsonb_set(p->'appointment', '{resource_ids}', v_resources)
    );
    INSERT INTO audit_event (recorded_at, action, outcome, agent, agent_institution,
                             entity_type, entity_id, entity_institution, source, detail,
                             before, after)
    SELECT r.recorded_at, r.action, r.outcome, r.agent, r.agent_institution,
           r.entity_type, r.entity_id, r.entity_institution, r.source, r.detail,
           a.v->'before', a.v->'after'  -- a JSON null stays one, as the ORM stores None
    FROM (SELECT jsonb_set(p->'audit', '{after,resource_ids}', v_resources) AS v) a,
         jsonb_populate_record(NULL::audit_event, a.v) r;
    INSERT INTO event_outbox (occurred_at, type, entity_type, entity_id, institution_id, payload)
    SELECT r.occurred_at, r.type, r.entity_type, r.entity_id, r.institution_id, e.v->'payload'
    FROM (SELECT jsonb_set(p->'event', '{payload,resources}', v_resources) AS v) e,
         jsonb_populate_record(NULL::event_outbox, e.v) r;
    RETURN jsonb_build_object(
        'status', 'ok', 'resource_ids', v_resources, 'patient_key', v_patient->>'patient_key'
    );
END
$$
"""


def upgrade() -> None:
    bind = op.get_bind()
    for table in _BOOKINGS:
        op.add_column(table, sa.Column("patient_id", sa.String(length=64), nullable=True))
        op.create_index(f"ix_{table}_patient_id", table, ["patient_id"], unique=False)
    op.add_column(
        "booking_policy",
        sa.Column("allow_patient_overlap", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "patient_claim",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("lane", sa.String(length=10), nullable=False),
        sa.Column("institution_id", sa.String(length=64), nullable=False),
        sa.Column("start_at", UtcDateTime(), nullable=False),
        sa.Column("end_at", UtcDateTime(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint(
            "end_at > start_at", name=op.f("ck_patient_claim_patient_claim_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_claim")),
    )
    op.create_index("ix_patient_claim_owner_id", "patient_claim", ["owner_id"], unique=False)
    op.create_index(
        "ix_patient_claim_live",
        "patient_claim",
        ["patient_key", "end_at"],
        unique=False,
        postgresql_where=sa.text("active"),
        sqlite_where=sa.text("active"),
    )
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE patient_claim ADD CONSTRAINT ex_patient_claim_same_lane "
            "EXCLUDE USING gist (patient_key WITH =, lane WITH =, "
            "tstzrange(start_at, end_at, '[)') WITH &&) WHERE (active AND exclusive)"
        )
        op.execute(
            "ALTER TABLE patient_claim ADD CONSTRAINT ex_patient_claim_elsewhere "
            "EXCLUDE USING gist (patient_key WITH =, lane WITH <>, institution_id WITH <>, "
            "tstzrange(start_at, end_at, '[)') WITH &&) WHERE (active AND exclusive)"
        )
        op.execute(_FUNCTION)
    else:
        op.execute(_SQLITE_CLASH.format(event="INSERT"))
        op.execute(_SQLITE_CLASH.format(event="UPDATE"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from importlib import import_module

        previous = import_module(
            "carepool.core.migrations.versions.0012_booking_one_round_trip_booking_function"
        )
        op.execute(previous._FUNCTION)
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_patient_claim_no_clash_INSERT")
        op.execute("DROP TRIGGER IF EXISTS trg_patient_claim_no_clash_UPDATE")
    op.drop_index("ix_patient_claim_live", table_name="patient_claim")
    op.drop_index("ix_patient_claim_owner_id", table_name="patient_claim")
    op.drop_table("patient_claim")
    op.drop_column("booking_policy", "allow_patient_overlap")
    for table in _BOOKINGS:
        op.drop_index(f"ix_{table}_patient_id", table_name=table)
        op.drop_column(table, "patient_id")
