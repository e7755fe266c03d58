"""booking: one-round-trip booking function

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 02:26:24.700181

On PostgreSQL, `booking_create_appointment(p jsonb, ...)` does a booking's reads and writes in one
statement (docs/decisions/0010): it picks the resource lanes with the same rounds as
`booking.actions.allocate`, inserts the claims (`ON CONFLICT DO NOTHING`: the exclusion
constraint still refuses every overlap, a lost lane is tried again like `allocate` does), the
appointment, the audit row and the outbox event. The row values come from Python
(`audit.row_values`, `events.row_values`, the appointment's columns); the function only fills in
the chosen resources. SQLite has no such function and keeps the ORM path.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Returns {"status": "ok", "resource_ids": [...]}, {"status": "taken", "requirement": i,
# "available": n} (the caller raises SlotTaken and rolls back), {"status": "lapsed"} (a candidate
# has a hold that ran out: nothing written, the caller takes the ORM path, which releases it
# first) or, when p has a "version" other than booking_cache_version's, {"status": "stale"}
# (nothing written: the caller's cached catalogue is out of date and it starts again).
_FUNCTION = """
CREATE OR REPLACE FUNCTION booking_create_appointment(
    p jsonb,             -- start, end, lanes, now, version, claim{}, appointment{}, audit{}, event{}
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
    RETURN jsonb_build_object('status', 'ok', 'resource_ids', v_resources);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS booking_create_appointment(jsonb, int[], text[], int[], text[], text[])"
        )
