"""Links that stay true: a record a feed re-registers with another person's demographics is
taken out of its person, and no chain of automatic links gives a person two records of one
member (issue 12, "two people merged into one"), through the HTTP API and FHIR."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from carepool.identity import actions, matching
from carepool.identity.normalise import PatientFacts, features
from tests.conftest import Tokens
from tests.identity import feeds
from tests.identity.conftest import Fed, Ingest, _record

# H001 (张三 at the hospital) re-registered by the hospital with another person's demographics.
A08_H001_AS_ZHOU = "\r".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260310090000+0800||ADT^A08|H-A08-1|P|2.4",
        "EVN|A08|20260310090000+0800",
        # The identifiers are sent as before (the store cannot yet replace a changed set).
        f"PID|1||H001^^^HOSP^MR~{feeds.ZHANG_SAN_NID}^^^CHN^NNCHN||周^梅||19680812|F|||"
        "解放路88号^^县城||13577778888",
    ]
)
# The hospital's real second record of Zhang San (the demographics H001 had before).
A04_H009_ZHANG = "\r".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260311090000+0800||ADT^A04|H-A04-9|P|2.4",
        "EVN|A04|20260311090000+0800",
        f"PID|1||H009^^^HOSP^MR~{feeds.ZHANG_SAN_NID}^^^CHN^NNCHN||张^三||19900307|M|||"
        "幸福路1号^^柳村^^310000||13800138000",
    ]
)


def _post(client: TestClient, headers: dict[str, str], url: str, **body: Any) -> Any:
    response = client.post(url, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _records(client: TestClient, headers: dict[str, str], patient_id: str) -> set[str]:
    response = client.get(f"/api/v1/identity/patients/{patient_id}/person", headers=headers)
    assert response.status_code == 200, response.text
    return {r["patient_id"] for r in response.json()["records"]}


def _subjects(client: TestClient, headers: dict[str, str], patient_id: str) -> set[str]:
    response = client.get(f"/fhir/Patient/{patient_id}/$everything?_count=500", headers=headers)
    assert response.status_code == 200, response.text
    out = set()
    for entry in response.json().get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            out.add(resource["id"])
        elif "subject" in resource:
            out.add(resource["subject"]["reference"].removeprefix("Patient/"))
    return out


def test_a_reregistered_record_leaves_its_person_and_the_real_one_joins(
    client: TestClient, tokens: Tokens, fed: Fed, ingest: Ingest
) -> None:
    admin = tokens.admin()
    _post(client, admin, "/api/v1/identity/runs")
    assert _records(client, admin, fed.zhang_clinic) == {fed.zhang_hosp, fed.zhang_clinic}

    ingest(A08_H001_AS_ZHOU.encode() + b"\n", "a08.hl7", source="hosp")
    out = _post(client, admin, "/api/v1/identity/relink", patient_ids=[fed.zhang_hosp])
    assert out["changed"] == 1
    assert [d["patients"] for d in out["detached"]] == [[fed.zhang_hosp]]
    assert _records(client, admin, fed.zhang_hosp) == {fed.zhang_hosp}
    assert _records(client, admin, fed.zhang_clinic) == {fed.zhang_clinic}
    # The person's history says what happened, and the audit trail has it for both members.
    person = client.get(
        f"/api/v1/identity/patients/{fed.zhang_clinic}/person", headers=admin
    ).json()
    relink = [h for h in person["history"] if h["action"] == "relink"]
    assert relink and relink[0]["patient_ids"] == [fed.zhang_hosp]
    assert "re-evaluated after a change" in relink[0]["reason"]
    trail = client.get(
        "/api/v1/audit", params={"entity_type": "person", "limit": "100"}, headers=admin
    ).json()
    assert {r["entity_institution"] for r in trail["items"] if "relink" in (r["detail"] or "")} == {
        "hosp",
        "clinic",
    }
    # Nothing changed since: a second re-evaluation does nothing.
    again = _post(client, admin, "/api/v1/identity/relink")
    assert again["changed"] == 0 and again["detached"] == []

    # Zhang San comes back to the hospital under a new record: it joins the clinic's record,
    # and never the re-registered one.
    ingest(A04_H009_ZHANG.encode() + b"\n", "a04.hl7", source="hosp")
    with fed.sessions() as session:
        h009 = _record(session, "HOSP", "H009")
    run = _post(client, admin, "/api/v1/identity/runs")
    assert run["status"] == "succeeded"
    assert _records(client, admin, h009) == {h009, fed.zhang_clinic}
    assert _records(client, admin, fed.zhang_hosp) == {fed.zhang_hosp}
    assert fed.zhang_hosp not in _subjects(client, admin, h009)
    assert h009 not in _subjects(client, admin, fed.zhang_hosp)


def test_a_full_run_re_evaluates_changed_links_by_itself(
    client: TestClient, tokens: Tokens, fed: Fed, ingest: Ingest
) -> None:
    """The reported sequence with nobody calling relink: A08, the real second person, a run."""
    admin = tokens.admin()
    _post(client, admin, "/api/v1/identity/runs")
    ingest(A08_H001_AS_ZHOU.encode() + b"\n", "a08.hl7", source="hosp")
    ingest(A04_H009_ZHANG.encode() + b"\n", "a04.hl7", source="hosp")
    with fed.sessions() as session:
        h009 = _record(session, "HOSP", "H009")
    run = _post(client, admin, "/api/v1/identity/runs")
    assert run["model"]["relinked"][0]["patients"] == [fed.zhang_hosp]
    clinic_person = _records(client, admin, fed.zhang_clinic)
    assert not {fed.zhang_hosp, h009} <= clinic_person
    assert clinic_person == {h009, fed.zhang_clinic}
    assert fed.zhang_hosp not in _subjects(client, admin, h009)
    assert fed.zhang_hosp not in _subjects(client, admin, fed.zhang_clinic)


def test_a_changed_record_that_still_looks_alike_goes_to_review(
    client: TestClient, tokens: Tokens, fed: Fed, ingest: Ingest
) -> None:
    admin = tokens.admin()
    _post(client, admin, "/api/v1/identity/runs")
    # The clinic re-registers C-77 with the hospital's phone and address but another birth
    # date: the pair still scores high, but neither an id nor the date agrees any more.
    moved = "PID|1||C-77^^^CLINIC^MR||ZHANG^SAN||19930611|M|||幸福路1号^^柳村^^310000||13800138000"
    message = "\r".join(
        [
            "MSH|^~\\&|CLINIC|CLINIC||CAREPOOL|20260315090000+0800||ADT^A08|C-A08|P|2.5.1",
            "EVN|A08|20260315090000+0800",
            moved,
        ]
    )
    ingest(message.encode() + b"\n", "a08.hl7", source="clinic")
    out = _post(client, admin, "/api/v1/identity/relink")
    assert [d["patients"] for d in out["detached"]] == [[fed.zhang_clinic]]
    assert out["review"] == 1
    queue = client.get("/api/v1/identity/candidates", headers=admin).json()
    pair = next(
        c
        for c in queue["items"]
        if {c["patient_a"], c["patient_b"]} == {fed.zhang_hosp, fed.zhang_clinic}
    )
    assert pair["reason"].startswith("was linked; a record changed")


def test_relink_and_on_arrival_linking_are_for_consortium_accounts(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    steward = tokens.headers("data_steward", "clinic")
    for url in ("/api/v1/identity/relink", "/api/v1/identity/link-records"):
        response = client.post(url, json={"patient_ids": [fed.zhang_clinic]}, headers=steward)
        assert response.status_code == 403, response.text


# -- the plan: one member never twice in a person through automatic links ------------------------


def _pair(a: str, b: str, probability: float) -> matching.ScoredPair:
    row = dict.fromkeys(("name", "sex", "dob", "nid", "ids", "phone", "address"))
    hits = {
        "name": matching.LevelHit("name", "same characters", 10.8, 0),
        "sex": matching.LevelHit("sex", "same", 1.0, 0),
        "dob": matching.LevelHit("dob", "same date", 14.5, 0),
        "nid": matching.LevelHit("nid", None, 0.0, -1),
        "ids": matching.LevelHit("ids", None, 0.0, -1),
        "phone": matching.LevelHit("phone", "same", 11.8, 0),
        "address": matching.LevelHit("address", None, 0.0, -1),
    }
    assert set(hits) == set(row)
    return matching.ScoredPair(a, b, probability, 30.0, hits)


def test_an_automatic_chain_never_joins_two_records_of_one_member() -> None:
    members = {"A1": "a", "A2": "a", "B1": "b", "C1": "c"}
    pairs = [_pair("A1", "B1", 0.9999), _pair("A2", "B1", 0.999), _pair("A2", "C1", 0.995)]
    plan, groups = actions._plan(
        pairs,
        thresholds=matching.Thresholds(),
        institution_of=members,
        person_of={p: p for p in members},
        members={p: [p] for p in members},
        exclusions=set(),
    )
    assert [(m[2].a, m[2].b) for m in plan.merges] == [("A1", "B1"), ("A2", "C1")]
    assert [(p.a, p.b, why) for p, why in plan.review] == [
        ("A2", "B1", "the persons already hold records of one member (a)")
    ]
    # C1 joined A2; the person of A1 and B1 stays without a second record of member a.
    assert groups.find("A1") == groups.find("B1") != groups.find("A2") == groups.find("C1")


def test_the_python_scorer_agrees_with_splink_on_the_fixture_pairs(fed: Fed) -> None:
    from carepool.identity import service

    with fed.sessions() as session:
        rows = [features(f) for f in service.iter_patient_facts(session)]
    result = matching.link(rows, thresholds=matching.Thresholds(review=0.01))
    by_id = {r["unique_id"]: r for r in rows}
    assert result.pairs
    for pair in result.pairs:
        mine = matching.score(by_id[pair.a], by_id[pair.b])
        assert {k: v.level for k, v in mine.levels.items()} == {
            k: v.level for k, v in pair.levels.items()
        }
        assert abs(mine.weight - pair.weight) < 0.01, (pair.a, pair.b)


def test_facts_of_a_record_without_identifiers_have_no_ids() -> None:
    row = features(PatientFacts("p", "m", name="张三", identifiers=(("CHN", ""),)))
    assert row["ids"] is None


def test_a_new_record_is_linked_on_arrival_without_a_run(
    client: TestClient, tokens: Tokens, fed: Fed, ingest: Ingest
) -> None:
    admin = tokens.admin()
    _post(client, admin, "/api/v1/identity/runs")
    ingest(A04_H009_ZHANG.encode() + b"\n", "a04.hl7", source="hosp")
    with fed.sessions() as session:
        h009 = _record(session, "HOSP", "H009")
    out = _post(client, admin, "/api/v1/identity/link-records", patient_ids=[h009])
    assert out["records"] == 1 and out["new_persons"] == 1
    # H009 carries the id of H001 (one member): never linked automatically, it goes to review;
    # and the person of H001 and C-77 does not take a second record of the hospital.
    assert out["linked"] == []
    assert _records(client, admin, fed.zhang_clinic) == {fed.zhang_hosp, fed.zhang_clinic}
    assert _records(client, admin, h009) == {h009}
    queue = client.get("/api/v1/identity/candidates", headers=admin).json()["items"]
    assert any({c["patient_a"], c["patient_b"]} == {h009, fed.zhang_hosp} for c in queue)


def test_em_training_on_a_small_population_falls_back_and_says_so(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    run = _post(client, tokens.admin(), "/api/v1/identity/runs", training="em")
    assert run["status"] == "succeeded"
    assert run["model"]["training"] == "priors"
    assert run["model"]["requested_training"] == "em"
    assert "EM needs at least" in run["model"]["notes"][0]


def test_a_new_member_record_joins_its_person_on_arrival_and_is_audited(
    client: TestClient, tokens: Tokens, fed: Fed, ingest: Ingest
) -> None:
    admin = tokens.admin()
    _post(client, admin, "/api/v1/identity/runs")
    message = "\r".join(
        [
            "MSH|^~\\&|CLINIC|CLINIC||CAREPOOL|20260320090000+0800||ADT^A04|C-A04-5|P|2.5.1",
            "EVN|A04|20260320090000+0800",
            "PID|1||C-55^^^CLINIC^MR||LI^SI||19550101|F|||||139 0000 0000",
        ]
    )
    ingest(message.encode() + b"\n", "a04.hl7", source="clinic")
    with fed.sessions() as session:
        c55 = _record(session, "CLINIC", "C-55")
    out = _post(client, admin, "/api/v1/identity/link-records", patient_ids=[c55])
    assert [sorted(x["patients"]) for x in out["linked"]] == [sorted([c55, fed.li_si])]
    assert _records(client, admin, fed.li_si) == {fed.li_si, c55}
    person = client.get(f"/api/v1/identity/patients/{c55}/person", headers=admin).json()
    merge = next(h for h in person["history"] if h["action"] == "merge")
    assert merge["cause"] == "auto" and "(on arrival)" in merge["reason"]
    # Linking it again changes nothing.
    again = _post(client, admin, "/api/v1/identity/link-records", patient_ids=[c55])
    assert again["linked"] == [] and again["new_persons"] == 0
