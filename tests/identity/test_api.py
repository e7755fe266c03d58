"""The master patient index through the HTTP API: link runs, review queue, merge and unmerge."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from carepool.core.auth import Role
from tests.conftest import Tokens
from tests.identity.conftest import Fed


def _link(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/identity/runs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _person(client: TestClient, headers: dict[str, str], patient_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/identity/patients/{patient_id}/person", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_link_run_joins_one_person_across_members_and_not_namesakes(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    admin = tokens.admin()
    run = _link(client, admin)
    assert run["status"] == "succeeded"
    assert run["records"] == 7
    assert run["auto_links"] == 1
    assert run["model"]["engine"] == "splink/duckdb"
    assert run["model"]["training"] == "priors"  # seven records: too few to sample u

    zhang = _person(client, admin, fed.zhang_clinic)
    assert {r["patient_id"] for r in zhang["records"]} == {fed.zhang_hosp, fed.zhang_clinic}
    assert zhang["institutions"] == ["clinic", "hosp"]
    clinic_link = next(r for r in zhang["records"] if r["patient_id"] == fed.zhang_clinic)
    hosp_link = next(r for r in zhang["records"] if r["patient_id"] == fed.zhang_hosp)
    assert {clinic_link["link"]["source"], hosp_link["link"]["source"]} == {"auto", "new"}
    assert zhang["history"][0]["action"] == "merge" and zhang["history"][0]["cause"] == "auto"

    # The other 张三 (same name, other birth date and phone) stays a person of their own.
    other = _person(client, admin, fed.other_zhang)
    assert [r["patient_id"] for r in other["records"]] == [fed.other_zhang]
    assert other["person_id"] != zhang["person_id"]
    # ... and is not even proposed for review.
    queue = client.get("/api/v1/identity/candidates", headers=admin).json()
    pairs = {frozenset((c["patient_a"], c["patient_b"])) for c in queue["items"]}
    assert frozenset((fed.other_zhang, fed.zhang_clinic)) not in pairs
    assert frozenset((fed.other_zhang, fed.zhang_hosp)) not in pairs

    # Running again changes nothing: the pair is already one person.
    again = _link(client, admin)
    assert again["auto_links"] == 0 and again["new_persons"] == 0
    assert again["persons"] == run["persons"] == 6
    assert _person(client, admin, fed.zhang_hosp)["person_id"] == zhang["person_id"]


def test_review_queue_accept_merges_and_reject_keeps_apart(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    admin = tokens.admin()
    _link(client, admin)
    queue = client.get("/api/v1/identity/candidates", headers=admin).json()
    assert queue["total"] == 1
    (pair,) = queue["items"]
    assert {pair["patient_a"], pair["patient_b"]} == {fed.zhao_hosp, fed.zhao_clinic}
    assert 0.5 <= pair["match_probability"] < 0.99
    assert pair["fields"]["name"]["level"] == "same characters"
    assert pair["fields"]["phone"]["level"] == "different"
    assert {r["name"] for r in pair["records"]} == {"赵六"}

    # A clinic steward may not decide pairs that do not involve the clinic ... (there is one
    # that does, so try with a user of a member that is not involved).
    steward = tokens.headers(Role.CONSORTIUM_ADMIN)
    accepted = client.post(
        f"/api/v1/identity/candidates/{pair['id']}/accept",
        json={"note": "same woman, new phone"},
        headers=steward,
    )
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["candidate"]["status"] == "accepted"
    assert body["merge"]["cause"] == "review"
    person = _person(client, admin, fed.zhao_clinic)
    assert {r["patient_id"] for r in person["records"]} == {fed.zhao_hosp, fed.zhao_clinic}

    # Deciding twice is a conflict.
    again = client.post(f"/api/v1/identity/candidates/{pair['id']}/reject", json={}, headers=admin)
    assert again.status_code == 409


def test_rejected_pair_is_not_proposed_again(client: TestClient, tokens: Tokens, fed: Fed) -> None:
    admin = tokens.admin()
    _link(client, admin)
    (pair,) = client.get("/api/v1/identity/candidates", headers=admin).json()["items"]
    rejected = client.post(
        f"/api/v1/identity/candidates/{pair['id']}/reject",
        json={"note": "different women"},
        headers=admin,
    )
    assert rejected.status_code == 200
    assert rejected.json()["candidate"]["status"] == "rejected"
    run = _link(client, admin)
    assert run["review"] == 0 and run["excluded"] == 1
    assert client.get("/api/v1/identity/candidates", headers=admin).json()["total"] == 0
    rejected_list = client.get("/api/v1/identity/candidates?status=rejected", headers=admin)
    assert rejected_list.json()["total"] == 1
    # A merge by hand of two persons a reviewer said are different is refused.
    a = _person(client, admin, fed.zhao_hosp)["person_id"]
    b = _person(client, admin, fed.zhao_clinic)["person_id"]
    merge = client.post("/api/v1/identity/merge", json={"survivor": a, "other": b}, headers=admin)
    assert merge.status_code == 409


def test_merge_and_unmerge_with_history(client: TestClient, tokens: Tokens, fed: Fed) -> None:
    admin = tokens.admin()
    _link(client, admin)
    li = _person(client, admin, fed.li_si)["person_id"]
    wang = _person(client, admin, fed.wang_wu)["person_id"]
    merged = client.post(
        "/api/v1/identity/merge",
        json={"survivor": li, "other": wang, "reason": "test merge"},
        headers=admin,
    )
    assert merged.status_code == 201, merged.text
    event = merged.json()
    assert event["action"] == "merge" and event["patient_ids"] == [fed.wang_wu]
    person = client.get(f"/api/v1/identity/persons/{wang}", headers=admin).json()
    assert person["person_id"] == li  # a merged id resolves to the survivor
    assert {r["patient_id"] for r in person["records"]} == {fed.li_si, fed.wang_wu}

    undone = client.post(
        f"/api/v1/identity/history/{event['id']}/unmerge",
        json={"reason": "wrong merge"},
        headers=admin,
    )
    assert undone.status_code == 201, undone.text
    assert undone.json()["reverses"] == event["id"]
    back = _person(client, admin, fed.wang_wu)
    assert back["person_id"] == wang and back["status"] == "active"
    assert [r["patient_id"] for r in back["records"]] == [fed.wang_wu]
    history = client.get(f"/api/v1/identity/persons/{li}", headers=admin).json()["history"]
    assert [h["action"] for h in history] == ["merge", "unmerge"]
    assert history[0]["undone_by"] == history[1]["id"]
    # Unmerging twice is a conflict; the pair is now kept apart.
    twice = client.post(f"/api/v1/identity/history/{event['id']}/unmerge", json={}, headers=admin)
    assert twice.status_code == 409
    again = client.post(
        "/api/v1/identity/merge", json={"survivor": li, "other": wang}, headers=admin
    )
    assert again.status_code == 409

    audit = client.get("/api/v1/audit?entity_type=person", headers=admin).json()["items"]
    details = [a["detail"] for a in audit]
    assert any(d.startswith("merged") for d in details)
    assert any(d.startswith("unmerge") for d in details)


def test_unmerged_automatic_link_stays_apart_on_the_next_run(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    admin = tokens.admin()
    _link(client, admin)
    zhang = _person(client, admin, fed.zhang_clinic)
    (merge,) = [h for h in zhang["history"] if h["action"] == "merge"]
    undone = client.post(f"/api/v1/identity/history/{merge['id']}/unmerge", json={}, headers=admin)
    assert undone.status_code == 201
    run = _link(client, admin)
    assert run["auto_links"] == 0
    assert run["excluded"] == 1
    assert (
        _person(client, admin, fed.zhang_clinic)["person_id"]
        != _person(client, admin, fed.zhang_hosp)["person_id"]
    )


def test_identity_scopes_and_members(client: TestClient, tokens: Tokens, fed: Fed) -> None:
    admin = tokens.admin()
    _link(client, admin)
    clinician = tokens.headers(Role.CLINICIAN, "clinic")
    assert client.get("/api/v1/identity/candidates", headers=clinician).status_code == 403
    assert client.post("/api/v1/identity/runs", json={}, headers=clinician).status_code == 403
    refused = client.get("/api/v1/audit?outcome=denied&entity_type=http", headers=admin).json()[
        "items"
    ]
    assert any("Identity.read" in r["detail"] for r in refused)
    bad = client.post(
        "/api/v1/identity/runs", json={"auto_link": 0.4, "review": 0.9}, headers=admin
    )
    assert bad.status_code == 422


def test_detach_takes_a_record_out(client: TestClient, tokens: Tokens, fed: Fed) -> None:
    admin = tokens.admin()
    _link(client, admin)
    response = client.post(
        f"/api/v1/identity/patients/{fed.zhang_clinic}/detach",
        json={"reason": "wrong link"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    assert response.json()["action"] == "detach"
    assert (
        _person(client, admin, fed.zhang_clinic)["person_id"]
        != _person(client, admin, fed.zhang_hosp)["person_id"]
    )
    lonely = client.post(
        f"/api/v1/identity/patients/{fed.zhang_clinic}/detach", json={}, headers=admin
    )
    assert lonely.status_code == 409
