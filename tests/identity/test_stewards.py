"""Scopes for stewards (issue 12): a member's data steward sees that member's unmapped terms,
review pairs, alerts and persons through the API and nothing of other members; the
consortium's own steward (a steward of no member) sees every member's."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from carepool.core.time import utcnow
from carepool.identity import matching
from carepool.identity.normalise import PatientFacts, features, name_keys
from carepool.quality.models import AlertKind, QualityAlert
from carepool.terminology.models import MapKind, UnmappedTerm
from tests.conftest import Tokens
from tests.identity.conftest import Fed


def _queue(fed: Fed) -> None:
    """An unmapped term and an open alert at each member (what a run and a feed leave)."""
    now = utcnow()
    with fed.sessions() as session, session.begin():
        for member in ("hosp", "clinic"):
            session.add(
                UnmappedTerm(
                    kind=MapKind.CODE,
                    institution_id=member,
                    term=f"LOCAL-{member}",
                    count=3,
                    first_seen=now,
                    last_seen=now,
                )
            )
            session.add(
                QualityAlert(
                    kind=AlertKind.SCORE_DROP,
                    institution_id=member,
                    key=f"completeness-{member}",
                    run_id="run-1",
                    message=f"score of {member} dropped",
                )
            )


def _get(client: TestClient, headers: dict[str, str], url: str) -> dict[str, Any]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _members(client: TestClient, headers: dict[str, str]) -> dict[str, set[str]]:
    terms = _get(client, headers, "/api/v1/terminology/unmapped?status=all")["items"]
    alerts = _get(client, headers, "/api/v1/quality/alerts")["items"]
    pairs = _get(client, headers, "/api/v1/identity/candidates")["items"]
    persons = _get(client, headers, "/api/v1/identity/persons?limit=500")["items"]
    return {
        "terms": {t["institution_id"] for t in terms if t["term"].startswith("LOCAL-")},
        "alerts": {a["member"] for a in alerts},
        "pairs": {m for c in pairs for m in (c["institution_a"], c["institution_b"])},
        "persons": {m for p in persons for m in p["institutions"]},
    }


def test_member_stewards_see_their_member_and_the_consortium_steward_sees_all(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    response = client.post("/api/v1/identity/runs", json={}, headers=tokens.admin())
    assert response.status_code == 201, response.text
    _queue(fed)

    everyone = _members(client, tokens.headers("data_steward", None))
    assert everyone == {
        "terms": {"hosp", "clinic"},
        "alerts": {"hosp", "clinic"},
        "pairs": {"hosp", "clinic"},
        "persons": {"hosp", "clinic"},
    }
    clinic = _members(client, tokens.headers("data_steward", "clinic"))
    assert clinic["terms"] == clinic["alerts"] == {"clinic"}
    # A pair or person of the clinic shows the other member's side of it, and nothing else.
    assert "clinic" in clinic["pairs"] and "clinic" in clinic["persons"]
    persons = _get(
        client, tokens.headers("data_steward", "clinic"), "/api/v1/identity/persons?limit=500"
    )
    assert persons["total"] == 3  # Zhang San (both members), Zhao Liu (clinic) and Wang Wu
    assert all("clinic" in p["institutions"] for p in persons["items"])
    hosp = _members(client, tokens.headers("data_steward", "hosp"))
    assert hosp["terms"] == hosp["alerts"] == {"hosp"}
    hosp_persons = _get(
        client, tokens.headers("data_steward", "hosp"), "/api/v1/identity/persons?limit=500"
    )
    assert hosp_persons["total"] == 4
    assert all("hosp" in p["institutions"] for p in hosp_persons["items"])


def test_other_roles_still_need_a_member() -> None:
    import pytest

    from carepool.core.auth import Principal, Role
    from carepool.core.errors import PermissionDenied

    assert Principal("s", Role.DATA_STEWARD, None).consortium_wide
    assert not Principal("s", Role.DATA_STEWARD, "clinic").consortium_wide
    assert not Principal("c", Role.CLINICIAN, None).consortium_wide
    from carepool.core import auth

    with pytest.raises(PermissionDenied):
        auth.create_user(
            None,  # type: ignore[arg-type]
            username="c",
            display_name="c",
            role=Role.CLINICIAN,
            institution_id=None,
        )


# -- names with digits, day/month swaps, identifiers, twins ------------------------------------


def _row(pid: str, member: str, **kw: Any) -> dict[str, Any]:
    return features(PatientFacts(pid, member, **kw))


def test_digits_are_part_of_a_name() -> None:
    assert name_keys("测试22") != name_keys("测试2")
    pair = matching.score(
        _row("a", "hosp", name="测试22", sex="male", phone="13800000000"),
        _row("b", "clinic", name="测试2", sex="male", phone="13800000000"),
    )
    assert pair.level("name").level not in ("same characters", "same pinyin")
    assert matching.guard(pair) is not None


def test_a_day_month_swap_is_evidence_not_a_different_date() -> None:
    from datetime import date

    a = _row(
        "a", "hosp", name="王芳", sex="female", birth_date=date(1980, 3, 7), phone="13911112222"
    )
    b = _row(
        "b", "clinic", name="王芳", sex="female", birth_date=date(1980, 7, 3), phone="13911112222"
    )
    pair = matching.score(a, b)
    assert pair.level("dob").level == "day and month swapped"
    assert pair.probability >= 0.99 and matching.guard(pair) is None


def test_identifiers_count_with_their_issuer_only() -> None:
    a = _row("a", "hosp", name="John Smith", identifiers=(("passport-GBR", "123456789"),))
    b = _row("b", "clinic", name="Jon Smith", identifiers=(("passport-GBR", "123456789"),))
    c = _row("c", "clinic", name="Jon Smith", identifiers=(("passport-USA", "123456789"),))
    assert matching.score(a, b).level("ids").level == "same identifier"
    assert matching.score(a, c).level("ids").level == "no issuer in common"
    assert matching.score(a, b).level("name").level == "same sound"
    assert matching.guard(matching.score(a, b)) is None  # alike names, an id agrees
    assert matching.guard(matching.score(a, c)) is not None


def test_twins_are_labelled_for_the_reviewer() -> None:
    from datetime import date

    born = date(2001, 5, 6)
    a = _row("a", "hosp", name="李大明", sex="male", birth_date=born, phone="13700001111")
    b = _row("b", "clinic", name="李小明", sex="male", birth_date=born, phone="13700001111")
    pair = matching.score(a, b)
    assert matching.guard(pair) is not None
    label = matching.label(pair.detail())
    assert label is not None and label.startswith("possible twins")


def test_twins_reach_the_review_queue_labelled_as_such(
    client: TestClient, tokens: Tokens, fed: Fed
) -> None:
    from carepool.ingest import actions as ingest_actions
    from tests.ingest.conftest import SYSTEM

    def pid(member: str, local: str, name: str) -> bytes:
        return (
            "\r".join(
                [
                    f"MSH|^~\\&|HIS|{member.upper()}||CAREPOOL|20260320090000+0800||ADT^A04|"
                    f"{local}|P|2.4",
                    "EVN|A04|20260320090000+0800",
                    f"PID|1||{local}^^^{member.upper()}^MR||{name}||20010506|M|||"
                    "和平路7号^^县城||13700001111",
                ]
            ).encode()
            + b"\n"
        )

    for member, local, name in (("hosp", "H-T1", "李^大明"), ("clinic", "C-T2", "李^小明")):
        ingest_actions.do_ingest(
            fed.sessions,
            actor=SYSTEM,
            institution_id=member,
            inputs=[ingest_actions.Input(name=f"{local}.hl7", data=pid(member, local, name))],
        )
    admin = tokens.admin()
    assert client.post("/api/v1/identity/runs", json={}, headers=admin).status_code == 201
    queue = client.get("/api/v1/identity/candidates", headers=admin).json()["items"]
    (twins,) = [c for c in queue if {r["local_id"] for r in c["records"]} == {"H-T1", "C-T2"}]
    assert twins["label"].startswith("possible twins")
    persons = {
        client.get(f"/api/v1/identity/patients/{p}/person", headers=admin).json()["person_id"]
        for p in (twins["patient_a"], twins["patient_b"])
    }
    assert len(persons) == 2


def test_twins_of_the_other_sex_with_one_name_are_not_linked_automatically() -> None:
    from datetime import date

    born = date(1966, 6, 29)
    a = _row("a", "hosp", name="许敏国", sex="female", birth_date=born, phone="15830967903")
    b = _row("b", "clinic", name="许敏国", sex="male", birth_date=born, phone="15830967903")
    pair = matching.score(a, b)
    assert pair.probability >= 0.99
    assert matching.guard(pair) == "the sexes differ and no identifier agrees"


def test_homophone_names_in_characters_need_an_identifier() -> None:
    from datetime import date

    born = date(2011, 3, 3)
    a = _row("a", "hosp", name="郭平国", sex="male", birth_date=born, phone="18836095372")
    b = _row("b", "clinic", name="郭萍国", sex="male", birth_date=born, phone="18836095372")
    pair = matching.score(a, b)
    assert pair.level("name").level == "same pinyin, other characters"
    assert matching.guard(pair) == "the names only look alike and no identifier agrees"
    # Written in pinyin at one member, the same name is the same name.
    c = _row("c", "clinic", name="Guo Pingguo", sex="male", birth_date=born, phone="18836095372")
    assert matching.guard(matching.score(a, c)) is None
