"""The inpatient flow through the HTTP API: request, bed options, reserve, admit, transfer,
discharge, cleaning, the bed board, refusals and access rules."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.booking.inpatient.models import OPEN_END, Admission, AdmissionStatus, PatientSex
from carepool.booking.inpatient.service import bed_refusals, room_refusals
from carepool.booking.models import ResourceClaim
from carepool.catalog.models import GenderPolicy, Resource, ResourceKind
from carepool.core.audit import AuditOutcome, AuditRecord
from carepool.core.events import OutboxEvent
from carepool.core.time import FakeClock
from tests.booking.conftest import pid

Headers = dict[str, dict[str, str]]


def _request(
    client: TestClient,
    h: dict[str, str],
    *,
    patient: str = "p1",
    sex: str = "female",
    ward: str | None = "hosp-surg",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "institution_id": "hosp",
        "patient_ref": pid(patient),
        "patient_name": f"Patient {patient}",
        "patient_sex": sex,
        "age": 54,
        "ward_id": ward,
        "expected_stay_days": 5,
    }
    body.update(extra)
    response = client.post("/api/v1/admissions", json=body, headers=h)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _do(client: TestClient, h: dict[str, str], admission_id: str, action: str, **body: Any) -> Any:
    return client.post(f"/api/v1/admissions/{admission_id}/{action}", json=body or None, headers=h)


def _admit(client: TestClient, h: dict[str, str], bed: str, **request: Any) -> dict[str, Any]:
    a = _request(client, h, **request)
    response = _do(client, h, a["id"], "admit", bed_id=bed)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _board(client: TestClient, h: dict[str, str], **params: str) -> dict[str, Any]:
    response = client.get("/api/v1/bed-board", params=params, headers=h)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _bed(board: dict[str, Any], bed_id: str) -> dict[str, Any]:
    return next(b for b in board["beds"] if b["id"] == bed_id)


def _claims(sessions: sessionmaker[Session], owner: str) -> list[ResourceClaim]:
    with sessions() as s:
        return list(
            s.scalars(
                select(ResourceClaim)
                .where(ResourceClaim.owner_id == owner)
                .order_by(ResourceClaim.start_at)
            )
        )


def test_request_options_reserve_admit(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    a = _request(client, wards["clinic_doctor"], needed_features=["oxygen"])
    assert a["status"] == "requested" and a["requester_institution_id"] == "clinic"

    options = client.get(
        f"/api/v1/admissions/{a['id']}/bed-options", headers=wards["bed_manager"]
    ).json()
    ranked = [i["bed_id"] for i in options["items"]]
    # Female-only oxygen beds waste nothing; the same-sex room comes next; the monitor bed and
    # the isolation bed (unused equipment) last.
    assert ranked == ["hosp-r2-1", "hosp-r2-2", "hosp-r1-2", "hosp-r1-1", "hosp-iso1"]
    excluded = {e["bed_id"]: " ".join(e["reasons"]) for e in options["excluded"]}
    assert "male-only; patient is female" in excluded["hosp-r3-1"]
    assert "lacks oxygen" in excluded["hosp-obs1"]
    assert "out of service" in excluded["hosp-oos1"]

    reserved = _do(client, wards["bed_manager"], a["id"], "reserve", bed_id="hosp-r2-1")
    assert reserved.status_code == 200, reserved.text
    assert reserved.json()["status"] == "bed_reserved"
    assert _bed(_board(client, wards["bed_manager"], ward="hosp-surg"), "hosp-r2-1")["state"] == (
        "reserved"
    )

    clock.advance(timedelta(hours=3))
    admitted = _do(client, wards["bed_manager"], a["id"], "admit")
    assert admitted.status_code == 200, admitted.text
    body = admitted.json()
    assert body["status"] == "admitted" and body["bed_id"] == "hosp-r2-1"
    assert body["admitted_at"] == clock.now().isoformat()

    bed = _bed(_board(client, wards["bed_manager"], ward="hosp-surg"), "hosp-r2-1")
    assert bed["state"] == "occupied" and bed["patient"]["ref"] == pid("p1")
    assert bed["since"] == clock.now().isoformat()

    (claim,) = _claims(sessions, a["id"])
    assert claim.active and claim.purpose.value == "admission"
    assert claim.start_at == clock.now() and claim.end_at == OPEN_END
    with sessions() as s:
        types = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
    assert [t for t in types if t.startswith("booking.admission")] == [
        "booking.admission.requested",
        "booking.admission.bed_reserved",
        "booking.admission.admitted",
    ]


def test_refusals_name_the_bed_and_why(client: TestClient, wards: Headers) -> None:
    h = wards["bed_manager"]
    male = _request(client, h, patient="m1", sex="male")
    wrong_sex = _do(client, h, male["id"], "reserve", bed_id="hosp-r2-1")
    assert wrong_sex.status_code == 422
    assert wrong_sex.json()["type"].endswith("bed-not-suitable")
    assert wrong_sex.json()["detail"] == "bed hosp-r2-1 is female-only; patient is male"

    monitor = _request(client, h, patient="m2", sex="male", needed_features=["monitor"])
    missing = _do(client, h, monitor["id"], "reserve", bed_id="hosp-r1-2")
    assert missing.status_code == 422 and missing.json()["detail"] == "bed hosp-r1-2 lacks monitor"

    infectious = _request(client, h, patient="m3", sex="male", isolation=True)
    no_isolation = _do(client, h, infectious["id"], "admit", bed_id="hosp-r1-1")
    assert no_isolation.status_code == 422
    assert "not an isolation bed; patient needs isolation" in no_isolation.json()["detail"]
    assert _do(client, h, infectious["id"], "admit", bed_id="hosp-iso1").status_code == 200

    other_ward = _do(client, h, male["id"], "reserve", bed_id="hosp-r5-1")
    assert other_ward.status_code == 422
    assert (
        "is in ward hosp-med; the admission asks for ward hosp-surg" in other_ward.json()["detail"]
    )
    other_member = _do(client, h, male["id"], "reserve", bed_id="branch-b1")
    assert other_member.status_code == 422 and "belongs to branch" in other_member.json()["detail"]

    broken = _do(client, h, male["id"], "reserve", bed_id="hosp-oos1")
    assert broken.status_code == 409 and broken.json()["type"].endswith("bed-out-of-service")
    assert _do(client, h, male["id"], "reserve", bed_id="no-such-bed").status_code == 404
    # Nothing above changed the request.
    again = client.get(f"/api/v1/admissions/{male['id']}", headers=h).json()
    assert again["status"] == "requested" and again["bed_id"] is None


def test_same_sex_room_follows_its_patients(client: TestClient, wards: Headers) -> None:
    h = wards["bed_manager"]
    _admit(client, h, "hosp-r1-1", patient="f1", sex="female")
    male = _request(client, h, patient="m1", sex="male")
    refused = _do(client, h, male["id"], "reserve", bed_id="hosp-r1-2")
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("room-not-suitable")
    assert refused.json()["detail"] == (
        "bed hosp-r1-2 is in same-sex room hosp-r1, which holds female patient(s); patient is male"
    )
    options = client.get(f"/api/v1/admissions/{male['id']}/bed-options", headers=h).json()
    assert "hosp-r1-2" not in [i["bed_id"] for i in options["items"]]
    assert "hosp-r3-1" in [i["bed_id"] for i in options["items"]]

    female = _request(client, h, patient="f2", sex="female", needed_features=["oxygen"])
    options = client.get(f"/api/v1/admissions/{female['id']}/bed-options", headers=h).json()
    # Joining the room that already holds a woman keeps the empty female room free.
    assert options["items"][0]["bed_id"] == "hosp-r1-2"
    assert _do(client, h, female["id"], "reserve", bed_id="hosp-r1-2").status_code == 200


def test_occupied_bed_is_refused_with_what_holds_it(client: TestClient, wards: Headers) -> None:
    h = wards["bed_manager"]
    first = _admit(client, h, "hosp-obs1", patient="p1", sex="male")
    second = _request(client, h, patient="p2", sex="male")
    taken = _do(client, h, second["id"], "reserve", bed_id="hosp-obs1")
    assert taken.status_code == 409
    problem = taken.json()
    assert problem["type"].endswith("bed-occupied")
    assert problem["taken"][0]["owner_id"] == first["id"]
    assert problem["taken"][0]["end"] is None  # open-ended stay
    assert f"bed hosp-obs1 is occupied (admission {first['id']}" in problem["detail"]


def test_discharge_sends_the_bed_to_cleaning_first(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    h = wards["bed_manager"]
    a = _admit(client, h, "hosp-obs1", patient="p1", sex="male")
    clock.advance(timedelta(days=4))
    out = _do(client, h, a["id"], "discharge", note="home")
    assert out.status_code == 200 and out.json()["status"] == "discharged"
    assert out.json()["bed_history"] == [
        {"bed_id": "hosp-obs1", "from": a["admitted_at"], "to": clock.now().isoformat()}
    ]
    (claim,) = _claims(sessions, a["id"])
    assert claim.active and claim.end_at == clock.now()  # trimmed, kept as history

    assert _bed(_board(client, h, ward="hosp-surg"), "hosp-obs1")["state"] == "to_clean"
    nxt = _request(client, h, patient="p2", sex="female")
    dirty = _do(client, h, nxt["id"], "admit", bed_id="hosp-obs1")
    assert dirty.status_code == 409 and dirty.json()["type"].endswith("bed-not-clean")

    assert (
        client.post("/api/v1/beds/hosp-obs1/cleaned", headers=wards["branch_manager"]).status_code
        == 403
    )
    cleaned = client.post("/api/v1/beds/hosp-obs1/cleaned", headers=h)
    assert cleaned.status_code == 200 and cleaned.json()["state"] == "free"
    twice = client.post("/api/v1/beds/hosp-obs1/cleaned", headers=h)
    assert twice.status_code == 409 and "it is free" in twice.json()["detail"]
    assert _do(client, h, nxt["id"], "admit", bed_id="hosp-obs1").status_code == 200
    with sessions() as s:
        types = [e.type for e in s.scalars(select(OutboxEvent).order_by(OutboxEvent.id))]
        audited = s.scalars(
            select(AuditRecord).where(
                AuditRecord.entity_type == "bed", AuditRecord.entity_id == "hosp-obs1"
            )
        ).all()
    assert "booking.admission.discharged" in types
    assert types.index("booking.bed.to_clean") < types.index("booking.bed.cleaned")
    assert [r.detail for r in audited] == ["cleaned"]


def test_transfer_moves_the_claim_atomically(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    h = wards["bed_manager"]
    a = _admit(client, h, "hosp-r1-1", patient="p1", sex="male")
    admitted_at = clock.now()
    clock.advance(timedelta(hours=2))
    moved = _do(client, h, a["id"], "transfer", bed_id="hosp-r3-1", reason="needs a single room")
    assert moved.status_code == 200, moved.text
    assert moved.json()["bed_id"] == "hosp-r3-1"
    assert [e["bed_id"] for e in moved.json()["bed_history"]] == ["hosp-r1-1", "hosp-r3-1"]

    old, new = _claims(sessions, a["id"])
    assert (old.resource_id, old.start_at, old.end_at) == ("hosp-r1-1", admitted_at, clock.now())
    assert (new.resource_id, new.start_at, new.end_at) == ("hosp-r3-1", clock.now(), OPEN_END)
    live = [c for c in (old, new) if c.active and c.end_at > clock.now()]
    assert [c.resource_id for c in live] == ["hosp-r3-1"]  # exactly one live claim

    board = _board(client, h, ward="hosp-surg")
    assert _bed(board, "hosp-r1-1")["state"] == "to_clean"
    assert _bed(board, "hosp-r3-1")["state"] == "occupied"

    # A transfer into a taken bed changes nothing.
    _admit(client, h, "hosp-obs1", patient="p2", sex="male")
    clock.advance(timedelta(hours=1))
    refused = _do(client, h, a["id"], "transfer", bed_id="hosp-obs1")
    assert refused.status_code == 409 and refused.json()["type"].endswith("bed-occupied")
    assert [c.end_at for c in _claims(sessions, a["id"])] == [old.end_at, OPEN_END]
    same = _do(client, h, a["id"], "transfer", bed_id="hosp-r3-1")
    assert same.status_code == 422


def test_bed_board_counts_and_masking(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session], clock: FakeClock
) -> None:
    h = wards["bed_manager"]
    _admit(client, h, "hosp-r2-1", patient="f1", sex="female", patient_name="Zhang Hua")
    reserved = _request(client, h, patient="f2", sex="female")
    _do(client, h, reserved["id"], "reserve", bed_id="hosp-r2-2")
    gone = _admit(client, h, "hosp-obs1", patient="m1", sex="male")
    clock.advance(timedelta(days=1))
    _do(client, h, gone["id"], "discharge")

    board = _board(client, h, ward="hosp-surg")
    assert board["counts"] == {
        "free": 4,  # r1-1, r1-2, r3-1, iso1
        "reserved": 1,
        "occupied": 1,
        "to_clean": 1,
        "out_of_service": 1,
        "total": 8,
    }
    assert [w["id"] for w in board["wards"]] == ["hosp-surg"]
    occupied = _bed(board, "hosp-r2-1")
    assert occupied["patient"] == {
        "ref": pid("f1"),
        "name": "Zhang Hua",
        "sex": "female",
        "age": 54,
    }
    assert occupied["features"] == ["oxygen"] and occupied["gender_policy"] == "female"

    west = _board(client, h, campus="hosp-west")
    assert west["counts"]["total"] == 2 and west["counts"]["free"] == 2
    member = _board(client, wards["admin"], institution="hosp")
    assert member["counts"]["total"] == 10 and len(member["wards"]) == 2
    assert _board(client, h, institution="branch")["counts"]["total"] == 1

    for outsider in ("branch_manager", "hosp_reader"):
        seen = _bed(_board(client, wards[outsider], ward="hosp-surg"), "hosp-r2-1")
        assert seen["state"] == "occupied"
        assert seen["patient"] is None and seen["patient_masked"] is True
        assert seen["admission_id"] is None
    assert client.get("/api/v1/bed-board", params={"ward": "nope"}, headers=h).status_code == 404
    with sessions() as s:
        reads = s.scalars(select(AuditRecord).where(AuditRecord.entity_type == "bed_board")).all()
    assert any(
        "patients shown for: hosp" in r.detail and r.agent.startswith("bed_manager") for r in reads
    )
    assert any(r.detail.endswith("patients masked") for r in reads)


def test_access_rules_between_members(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    mine = _request(client, wards["clinic_doctor"], patient="c1")
    # The requesting clinic sees its request and may cancel it, but does not assign hospital beds.
    assert (
        client.get(f"/api/v1/admissions/{mine['id']}", headers=wards["clinic_doctor"]).status_code
        == 200
    )
    assert (
        _do(client, wards["clinic_doctor"], mine["id"], "reserve", bed_id="hosp-r2-1").status_code
        == 403
    )
    # Another member neither sees nor manages it.
    stranger = wards["branch_manager"]
    assert client.get(f"/api/v1/admissions/{mine['id']}", headers=stranger).status_code == 403
    assert _do(client, stranger, mine["id"], "reserve", bed_id="hosp-r2-1").status_code == 403
    assert client.get("/api/v1/admissions", headers=stranger).json()["total"] == 0
    # Nor may a member request beds with someone else's identity of ward.
    wrong = client.post(
        "/api/v1/admissions",
        json={
            "institution_id": "hosp",
            "patient_ref": pid("x"),
            "patient_sex": "male",
            "age": 3,
            "ward_id": "branch-w1",
            "expected_stay_days": 1,
        },
        headers=stranger,
    )
    assert wrong.status_code == 422 and "belongs to branch" in wrong.text

    cancelled = _do(client, wards["clinic_doctor"], mine["id"], "cancel", reason="went elsewhere")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    with sessions() as s:
        denied = s.scalars(
            select(AuditRecord).where(AuditRecord.outcome == AuditOutcome.DENIED)
        ).all()
    assert f"GET /api/v1/admissions/{mine['id']}" in [d.entity_id for d in denied]
    assert f"POST /api/v1/admissions/{mine['id']}/reserve" in [d.entity_id for d in denied]


def test_cancel_frees_the_reserved_bed_and_state_machine(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    h = wards["bed_manager"]
    a = _request(client, h, patient="p1", sex="male")
    assert _do(client, h, a["id"], "discharge").status_code == 409  # not admitted
    assert _do(client, h, a["id"], "admit").status_code == 422  # no bed reserved, none given
    assert _do(client, h, a["id"], "reserve", bed_id="hosp-r3-1").status_code == 200
    # Moving the reservation claims the new bed first, then drops the old one.
    assert _do(client, h, a["id"], "reserve", bed_id="hosp-obs1").status_code == 200
    board = _board(client, h, ward="hosp-surg")
    assert _bed(board, "hosp-r3-1")["state"] == "free"
    assert _bed(board, "hosp-obs1")["state"] == "reserved"
    assert _do(client, h, a["id"], "cancel").status_code == 422  # a reason is required
    assert _do(client, h, a["id"], "cancel", reason="transferred out").status_code == 200
    assert _bed(_board(client, h, ward="hosp-surg"), "hosp-obs1")["state"] == "free"
    assert all(not c.active for c in _claims(sessions, a["id"]))
    assert _do(client, h, a["id"], "admit", bed_id="hosp-obs1").status_code == 409


def test_idempotent_request(client: TestClient, wards: Headers) -> None:
    body = {
        "institution_id": "hosp",
        "patient_ref": pid("p1"),
        "patient_sex": "female",
        "age": 30,
        "department_id": "hosp-gs",
        "expected_stay_days": 2,
    }
    h = {**wards["hosp_doctor"], "Idempotency-Key": "adm-1"}
    first = client.post("/api/v1/admissions", json=body, headers=h)
    again = client.post("/api/v1/admissions", json=body, headers=h)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/api/v1/admissions", json={**body, "patient_ref": pid("p2")}, headers=h)
    assert other.status_code == 409
    bad = client.post(
        "/api/v1/admissions", json={**body, "needed_features": ["jacuzzi"]}, headers=h
    )
    assert bad.status_code == 422


def _bed_row(id: str, policy: GenderPolicy, room: str | None = "r", **kw: Any) -> Resource:
    return Resource(
        id=id,
        kind=ResourceKind.BED,
        type_code=kw.get("type_code", "bed.general"),
        institution_id="hosp",
        ward_id="w",
        room_id=room,
        gender_policy=policy,
        features=kw.get("features", []),
    )


def _patient(
    sex: PatientSex, *, isolation: bool = False, features: list[str] | None = None
) -> Admission:
    return Admission(
        id=f"a-{sex.value}-{isolation}",
        institution_id="hosp",
        patient_sex=sex,
        isolation=isolation,
        needed_features=features or [],
        ward_id=None,
        department_id=None,
        status=AdmissionStatus.ADMITTED,
    )


def test_room_rules_without_a_database() -> None:
    bed = _bed_row("b1", GenderPolicy.SAME_SEX_ROOM)
    female, male = _patient(PatientSex.FEMALE), _patient(PatientSex.MALE)
    unknown = _patient(PatientSex.UNKNOWN)
    assert room_refusals(bed, female, [female]) == []
    assert "holds male patient(s); patient is female" in room_refusals(bed, female, [male])[0]
    assert "patient's sex is unknown" in room_refusals(bed, unknown, [female])[0]
    assert room_refusals(bed, unknown, []) == []
    mixed = _bed_row("b2", GenderPolicy.MIXED)
    assert room_refusals(mixed, male, [female]) == []
    isolated = _patient(PatientSex.FEMALE, isolation=True)
    assert room_refusals(mixed, isolated, [male]) == [
        "patient needs isolation; room r holds 1 other patient(s)"
    ]
    assert room_refusals(mixed, male, [isolated]) == ["room r holds a patient in isolation"]
    iso_bed = _bed_row("b3", GenderPolicy.MIXED, type_code="bed.isolation")
    assert bed_refusals(iso_bed, isolated, wards={}, check_target=True) == []
    assert bed_refusals(mixed, isolated, wards={}, check_target=True) == [
        "bed b2 is not an isolation bed; patient needs isolation"
    ]


def test_concurrent_assignments_never_mix_a_same_sex_room(
    client: TestClient, wards: Headers, sessions: sessionmaker[Session]
) -> None:
    """Men aim at one bed of a same-sex room and women at the other, all at once: the room
    serialises them, so whoever comes first decides its sex and the other sex is refused."""
    h = wards["bed_manager"]
    attempts = [
        (_request(client, h, patient=f"{sex}{i}", sex=sex)["id"], bed)
        for i in range(4)
        for sex, bed in (("male", "hosp-r1-1"), ("female", "hosp-r1-2"))
    ]
    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        codes = list(
            pool.map(lambda a: _do(client, h, a[0], "admit", bed_id=a[1]).status_code, attempts)
        )
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409}
    board = _board(client, h, ward="hosp-surg")
    in_room = [_bed(board, b)["patient"] for b in ("hosp-r1-1", "hosp-r1-2")]
    assert len([p for p in in_room if p]) == 1
    with sessions() as s:
        live = s.scalars(
            select(ResourceClaim).where(
                ResourceClaim.resource_id.in_(["hosp-r1-1", "hosp-r1-2"]),
                ResourceClaim.active.is_(True),
            )
        ).all()
    assert len(live) == 1
