"""The one-statement booking on PostgreSQL (`booking._fast`, migration 0012) against the ORM path.

Both paths must leave the same rows (appointment, claims, audit row, outbox event) and give the
same answers, including when a concurrent booking takes a lane between the read and the insert.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking import _fast
from tests.booking.conftest import T0, at, pid, register_patients
from tests.factories import small_catalog

Headers = dict[str, dict[str, str]]

PATHS = ("orm", "fast")


@pytest.fixture()
def pg(app: Any, pool: Headers) -> Engine:
    engine: Engine = app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("the booking function exists on PostgreSQL only")
    return engine


@pytest.fixture()
def statements(pg: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        seen.append(args[2])

    event.listen(pg, "before_cursor_execute", on_execute)
    yield seen
    event.remove(pg, "before_cursor_execute", on_execute)


def _use(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fast, "ENABLED", path == "fast")


def _book(client: TestClient, h: dict[str, str], start: str, **extra: Any) -> Any:
    body = {
        "service_id": "ct-head",
        "institution_id": "hosp",
        "start": start,
        "patient_ref": pid("p1"),
    }
    return client.post("/api/v1/appointments", json=body | extra, headers=h)


def _rows(engine: Engine, apt_id: str) -> dict[str, Any]:
    """Every row the booking wrote, ids and wall-clock stamps left out, its id as "APT"."""
    queries = {
        "appointment": "SELECT * FROM appointment WHERE id = :id",
        "claims": "SELECT * FROM resource_claim WHERE owner_id = :id ORDER BY id",
        "patient_claims": "SELECT * FROM patient_claim WHERE owner_id = :id ORDER BY id",
        "audit": "SELECT *, before IS NULL AS before_is_sql_null, after IS NULL AS "
        "after_is_sql_null FROM audit_event WHERE entity_id = :id ORDER BY id",
        "outbox": "SELECT *, payload IS NULL AS payload_is_sql_null FROM event_outbox "
        "WHERE entity_id = :id ORDER BY id",
    }
    rows: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, sql in queries.items():
            found = [dict(r._mapping) for r in conn.execute(text(sql), {"id": apt_id})]
            for r in found:
                for volatile in ("recorded_at", "occurred_at"):
                    assert r.pop(volatile, None) is not None or volatile not in r
                if name != "appointment":
                    r.pop("id")
            rows[name] = found
    return json.loads(json.dumps(rows, default=str).replace(apt_id, "APT"))


@pytest.mark.parametrize("hold", [False, True])
def test_both_paths_write_the_same_rows(
    client: TestClient,
    pool: Headers,
    pg: Engine,
    statements: list[str],
    monkeypatch: pytest.MonkeyPatch,
    hold: bool,
) -> None:
    seen: dict[str, Any] = {}
    for path in PATHS:
        _use(path, monkeypatch)
        statements.clear()
        response = _book(client, pool["clinic_doctor"], at(2, 9), hold=hold, note="n")
        assert response.status_code == 201, response.text
        used = any("booking_create_appointment" in s for s in statements)
        assert used == (path == "fast")
        body = response.json()
        seen[path] = {
            "response": json.loads(json.dumps(body).replace(body["id"], "APT")),
            "rows": _rows(pg, body["id"]),
        }
        # Free the time, so the other path books the very same resources.
        cancelled = client.post(
            f"/api/v1/appointments/{body['id']}/cancel",
            json={"reason": "again"},
            headers=pool["clinic_doctor"],
        )
        assert cancelled.status_code == 200, cancelled.text
    assert seen["fast"]["response"] == seen["orm"]["response"]
    for table, orm_rows in seen["orm"]["rows"].items():
        fast_rows = seen["fast"]["rows"][table]
        assert len(fast_rows) == len(orm_rows), table
        for fast_row, orm_row in zip(fast_rows, orm_rows, strict=True):
            differ = {k: (fast_row.get(k), v) for k, v in orm_row.items() if fast_row.get(k) != v}
            assert fast_row == orm_row, f"{table}: (fast, orm) {differ}"
    rows = seen["fast"]["rows"]
    assert len(rows["claims"]) == 2 and len(rows["audit"]) == 1 and len(rows["outbox"]) == 1
    (patient_claim,) = rows["patient_claims"]
    assert patient_claim["patient_id"] == pid("p1") and patient_claim["lane"] == "visit"
    assert patient_claim["patient_key"].startswith("per-test-")  # the person, not the record
    assert patient_claim["active"] is True  # read before the cancellation
    assert (patient_claim["expires_at"] is not None) == hold
    assert rows["appointment"][0]["patient_id"] == pid("p1")
    assert body["patient"] == {"reference": f"Patient/{pid('p1')}"}
    assert rows["appointment"][0]["resource_ids"] == ["hosp-ct1", "hosp-tech1"]
    assert rows["audit"][0]["after"]["resource_ids"] == ["hosp-ct1", "hosp-tech1"]
    assert rows["outbox"][0]["payload"]["resources"] == ["hosp-ct1", "hosp-tech1"]


@pytest.mark.parametrize("path", PATHS)
def test_a_lane_lost_to_a_concurrent_booking_is_refused_with_409(
    client: TestClient,
    pool: Headers,
    pg: Engine,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """A rival claims the only CT after the booking read the claims: its insert waits, skips the
    lane once the rival commits, finds no other CT and answers 409, writing nothing."""
    _use(path, monkeypatch)
    start = at(2, 9)
    rival = pg.connect()
    tx = rival.begin()
    rival.execute(
        text(
            "INSERT INTO resource_claim (resource_id, lane, start_at, end_at, purpose, owner_id, "
            "active) VALUES ('hosp-ct1', 0, CAST(:start AS timestamptz), "
            "CAST(:start AS timestamptz) + interval '10 minutes', "
            "'appointment', 'apt-rival', true)"
        ),
        {"start": start},
    )
    answer: dict[str, Any] = {}
    booking = threading.Thread(
        target=lambda: answer.setdefault("r", _book(client, pool["clinic_doctor"], start))
    )
    booking.start()
    try:
        deadline = time.monotonic() + 20
        waiting = 0
        while waiting == 0 and time.monotonic() < deadline and booking.is_alive():
            time.sleep(0.05)
            with pg.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar_one()
        assert waiting == 1, "the booking should wait for the rival's claim"
    finally:
        tx.commit()
        rival.close()
        booking.join(30)
    response = answer["r"]
    assert response.status_code == 409, response.text
    problem = response.json()
    assert "needs 1 × modality.CT, 0 available" in problem["detail"]
    assert [t["resource_id"] for t in problem["taken"]] == ["hosp-ct1"]
    with pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM appointment")).scalar_one() == 0
        owners = conn.execute(text("SELECT owner_id FROM resource_claim")).scalars().all()
        assert owners == ["apt-rival"]


@pytest.mark.parametrize("path", PATHS)
def test_a_lapsed_hold_in_the_way_is_released_on_both_paths(
    client: TestClient,
    pool: Headers,
    pg: Engine,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    clock: Any,
) -> None:
    """The function steps aside for a lapsed hold (the ORM path releases it), same answer."""
    _use(path, monkeypatch)
    held = _book(client, pool["clinic_doctor"], at(2, 9), hold=True)
    assert held.status_code == 201, held.text
    clock.advance(timedelta(minutes=30))
    again = _book(client, pool["hosp_doctor"], at(2, 9), patient_ref=pid("p2"))
    assert again.status_code == 201, again.text
    state = client.get(f"/api/v1/appointments/{held.json()['id']}", headers=pool["admin"]).json()
    assert state["status"] == "cancelled" and state["cancel_reason"] == "hold expired"


@pytest.mark.parametrize("notice", [(0, 72 * 60), (72 * 60, 0)])
def test_a_stale_cached_catalogue_is_caught_by_the_booking_statement(
    client: TestClient,
    pool: Headers,
    pg: Engine,
    statements: list[str],
    notice: tuple[int, int],
) -> None:
    """The fast path books on the process's last catalogue unchecked; the statement refuses a
    stale one, and the booking starts again on the current catalogue (either way round)."""
    before, after = notice
    policy = {"hold_minutes": 10, "overbook_lanes": 0, "min_notice_minutes": before}
    url = "/api/v1/services/ct-head/booking-policy"
    assert client.put(url, json=policy, headers=pool["admin"]).status_code == 200
    warm = _book(client, pool["clinic_doctor"], at(3, 9))  # this process now caches `before`
    assert warm.status_code == (201 if before == 0 else 422), warm.text
    # Another process changes the policy: this one's cache is not told.
    with pg.begin() as conn:
        conn.execute(
            text("UPDATE booking_policy SET min_notice_minutes = :m WHERE service_id = 'ct-head'"),
            {"m": after},
        )
    statements.clear()
    response = _book(client, pool["clinic_doctor"], at(1, 10))  # ten hours ahead
    assert response.status_code == (201 if after == 0 else 422), response.text
    calls = sum("booking_create_appointment" in s for s in statements)
    # 0 → 72 h: booked on the guess, which the statement finds stale; refused on the current.
    # 72 h → 0: refused on the guess, which is checked and found stale; booked on the current.
    assert calls == 1


def test_array_literals_round_trip(pg: Engine) -> None:
    values = ["hosp-ct1", 'a"b', "c\\d", "e,f", "NULL", "", " g ", "{h}"]
    literal = _fast._array(_fast._quoted(v) for v in values)
    with pg.connect() as conn:
        back = conn.exec_driver_sql("SELECT %(a)s::text[]", {"a": literal}).scalar_one()
    assert back == values


def _duo_catalog() -> dict[str, Any]:
    """The small catalogue plus two CTs, three technicians and a service needing 1 CT and 2
    technicians: enough candidates for the lane choice to matter."""
    catalog = small_catalog()
    resources = {r["id"]: r for r in catalog["resources"]}
    for n in (2, 3):
        catalog["resources"].append(
            {**resources["hosp-ct1"], "id": f"hosp-ct{n}", "name": f"CT scanner {n}"}
        )
    for n, skill in ((2, 1), (3, 2), (4, 1)):
        catalog["resources"].append(
            {**resources["hosp-tech1"], "id": f"hosp-tech{n}", "skill_level": skill}
        )
    head = catalog["services"][0]
    catalog["services"].append(
        {
            **head,
            "id": "ct-duo",
            "requirements": [
                {"kind": "modality", "type_code": "modality.CT", "count": 1},
                {"kind": "staff", "role": "technician", "min_skill": 1, "count": 2},
            ],
        }
    )
    return catalog


def test_both_paths_choose_the_same_lanes_around_random_claims(
    client: TestClient,
    tokens: Any,
    clock: Any,
    monkeypatch: pytest.MonkeyPatch,
    app: Any,
    sessions: sessionmaker[Session],
) -> None:
    """Random live and released claims in the way, overbooking on: both paths book the same
    resources, or refuse with the same problem (message and `taken` report)."""
    engine: Engine = app.state.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("the booking function exists on PostgreSQL only")
    admin = tokens.admin()
    doc = _duo_catalog()
    imported = client.post("/api/v1/catalog/import", json=doc, headers=admin)
    assert imported.status_code == 200, imported.text
    register_patients(sessions, [i["id"] for i in doc["institutions"]])
    policy = {"hold_minutes": 10, "overbook_lanes": 1, "min_notice_minutes": 0}
    put = client.put("/api/v1/services/ct-duo/booking-policy", json=policy, headers=admin)
    assert put.status_code == 200, put.text
    doctor = tokens.headers("clinician", "clinic")
    names = ["hosp-ct1", "hosp-ct2", "hosp-ct3"] + [f"hosp-tech{n}" for n in (1, 2, 3, 4)]
    rng = random.Random(20261129)
    outcomes: set[int] = set()
    for k in range(16):
        start = T0 + timedelta(days=2, hours=8, minutes=10 + 30 * k)  # Thursday, CTs open
        rows = [
            {"r": rid, "l": lane, "a": rng.random() < 0.85, "o": f"apt-rival-{k}-{rid}-{lane}"}
            for rid in names
            for lane in (0, 1)
            if rng.random() < 0.75
        ]
        with engine.begin() as conn:
            for row in rows:
                conn.execute(
                    text(
                        "INSERT INTO resource_claim (resource_id, lane, start_at, end_at, "
                        "purpose, owner_id, active) VALUES (:r, :l, :s, :e, 'appointment', :o, :a)"
                    ),
                    row | {"s": start - timedelta(minutes=5), "e": start + timedelta(minutes=20)},
                )
        seen = {}
        for path in PATHS:
            _use(path, monkeypatch)
            body = {"service_id": "ct-duo", "institution_id": "hosp", "patient_ref": pid(f"p{k}")}
            r = client.post(
                "/api/v1/appointments", json=body | {"start": start.isoformat()}, headers=doctor
            )
            answer = r.json()
            if r.status_code == 201:
                with engine.connect() as conn:
                    lanes = conn.execute(
                        text(
                            "SELECT resource_id, lane FROM resource_claim WHERE owner_id = :o "
                            "ORDER BY id"
                        ),
                        {"o": answer["id"]},
                    ).all()
                seen[path] = (201, [answer["resource_ids"], [tuple(x) for x in lanes]])
                cancel = client.post(
                    f"/api/v1/appointments/{answer['id']}/cancel",
                    json={"reason": "again"},
                    headers=doctor,
                )
                assert cancel.status_code == 200, cancel.text
            else:
                seen[path] = (r.status_code, [answer.get("detail"), answer.get("taken")])
        assert seen["fast"] == seen["orm"], (k, rows)
        outcomes.add(seen["fast"][0])
    assert outcomes == {201, 409}  # the scenarios cover both
