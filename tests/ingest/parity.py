"""Facts that Microsoft's FHIR-Converter derives from an HL7 v2 message, and the same facts read
back from carepool's `/fhir` after ingesting that message.

The converter's bundles (`../shared/data/hl7v2-messages/expected-fhir-ms-converter/`) are one
possible mapping, not ground truth: we compare facts, not resources. A fact is a small tuple —
`("Patient", "birthDate", "1924-10-10")`, `("Observation", "718-7.value", "13.5")` — and the
score is the share of the converter's facts that carepool serves. The categories are the ones
issue 11 names: identifiers, names, birth date, sex, observation codes, values, units, ranges,
flags (interpretations), times, report/order links and encounters.

Times: the converter copies a v2 time without an offset as written; carepool stores an instant
(the member's local time zone applied), so served times are compared in that zone, to the
precision the converter wrote.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

Json = dict[str, Any]
Fact = tuple[str, str, str]

ORIGINAL_EXTENSION_SUFFIX = "original-value"


def category(fact: Fact) -> str:
    kind, key, _value = fact
    name = key.rsplit(".", 1)[-1]
    if kind == "Patient":
        return {"family": "names", "given": "names", "birthDate": "birth date"}.get(
            name, {"gender": "sex", "identifier": "identifiers"}.get(name, name)
        )
    if kind == "Encounter":
        return "encounters"
    if name in ("effective", "issued"):
        return "times"
    if name in ("result", "basedOn", "order"):
        return "report/order links"
    if name in ("low", "high", "rangeText"):
        return "ranges"
    if name == "interpretation":
        return "flags"
    return {"code": "codes", "value": "values", "unit": "units", "identifier": "identifiers"}.get(
        name, name
    )


def _number(value: Any) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value).strip().upper()


def _time(text: str | None) -> str | None:
    """A FHIR date/dateTime: with an offset, the instant in UTC to the minute (`...Z`); without,
    as written, cut to `YYYY-MM-DDTHH:MM` at most (seconds vary)."""
    if not text:
        return None
    return _utc(text) or text[:16]


def _utc(text: str | None) -> str | None:
    if not text or len(text) <= 10:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    return value.astimezone(UTC).isoformat()[:16] + "Z"


def _local(text: str | None, tz: tzinfo, precision: int) -> str | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text[:precision]
    if value.tzinfo is not None:
        value = value.astimezone(tz)
    return value.isoformat()[:precision]


def _codes(concept: Json | None) -> list[str]:
    if not concept:
        return []
    return [c["code"] for c in concept.get("coding", []) if c.get("code")]


def _identifiers(resource: Json) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("value")]


def expected_facts(bundle: Json) -> list[Fact]:
    """The facts of a converter bundle (as a list: a fact may occur more than once)."""
    resources = [e["resource"] for e in bundle.get("entry", [])]
    by_ref = {f"{r['resourceType']}/{r.get('id')}": r for r in resources}
    facts: list[Fact] = []
    for r in resources:
        kind = r["resourceType"]
        if kind == "Patient":
            facts += [("Patient", "identifier", v) for v in _identifiers(r)]
            for name in r.get("name", [])[:1]:
                if name.get("family"):
                    facts.append(("Patient", "family", name["family"].upper()))
                facts += [("Patient", "given", g.upper()) for g in name.get("given", []) if g]
            if r.get("birthDate"):
                facts.append(("Patient", "birthDate", r["birthDate"][:10]))
            if r.get("gender"):
                facts.append(("Patient", "gender", r["gender"]))
        elif kind == "Observation":
            for code in _codes(r.get("code"))[:1]:
                facts += _observation_facts(code, r)
        elif kind == "DiagnosticReport":
            for code in _codes(r.get("code"))[:1]:
                facts.append(("DiagnosticReport", f"{code}.code", code))
                if (t := _time(r.get("effectiveDateTime"))) is not None:
                    facts.append(("DiagnosticReport", f"{code}.effective", t))
                for ref in r.get("result", []):
                    target = by_ref.get(ref.get("reference", ""))
                    for obs_code in _codes(target.get("code") if target else None)[:1]:
                        facts.append(("DiagnosticReport", f"{code}.result", obs_code))
                if r.get("basedOn"):
                    facts.append(("DiagnosticReport", f"{code}.basedOn", "yes"))
        elif kind == "ServiceRequest":
            for code in _codes(r.get("code"))[:1]:
                facts.append(("ServiceRequest", f"{code}.code", code))
                facts += [("ServiceRequest", f"{code}.identifier", v) for v in _identifiers(r)]
        elif kind == "Encounter":
            klass = (r.get("class") or {}).get("code")
            if klass:
                facts.append(("Encounter", "class", klass))
            facts += [("Encounter", "identifier", v) for v in _identifiers(r)]
            period = r.get("period") or {}
            for end in ("start", "end"):
                if (t := _time(period.get(end))) is not None:
                    facts.append(("Encounter", f"period.{end}", t))
    return facts


def _observation_facts(code: str, r: Json) -> list[Fact]:
    facts: list[Fact] = [("Observation", f"{code}.code", code)]
    quantity = r.get("valueQuantity")
    if quantity is not None:
        if quantity.get("value") is not None:
            facts.append(("Observation", f"{code}.value", _number(quantity["value"])))
        unit = quantity.get("code") or quantity.get("unit")  # the UCUM code where given
        if unit:
            facts.append(("Observation", f"{code}.unit", unit.lower()))
    elif r.get("valueString"):
        facts.append(("Observation", f"{code}.value", r["valueString"].strip().upper()))
    elif r.get("valueCodeableConcept"):
        for value in _codes(r["valueCodeableConcept"])[:1]:
            facts.append(("Observation", f"{code}.value", value.upper()))
    for ref in r.get("referenceRange", [])[:1]:
        for end in ("low", "high"):
            if (ref.get(end) or {}).get("value") is not None:
                facts.append(("Observation", f"{code}.{end}", _number(ref[end]["value"])))
        if ref.get("text") and not (ref.get("low") or ref.get("high")):
            facts.append(("Observation", f"{code}.rangeText", ref["text"].strip()))
    for concept in r.get("interpretation", [])[:1]:
        for value in _codes(concept)[:1]:
            facts.append(("Observation", f"{code}.interpretation", value))
    if (t := _time(r.get("effectiveDateTime"))) is not None:
        facts.append(("Observation", f"{code}.effective", t))
    if (t := _time(r.get("issued"))) is not None:
        facts.append(("Observation", f"{code}.issued", t))
    return facts


def served_facts(resources: Iterable[Json], tz: tzinfo) -> set[Fact]:
    """Every fact carepool's resources could match (each served code of an observation, its
    standard and original value and unit, times in the member's zone at every precision)."""
    resources = list(resources)
    by_ref = {f"{r['resourceType']}/{r.get('id')}": r for r in resources}
    facts: set[Fact] = set()

    def times(kind: str, key: str, text: str | None) -> None:
        for precision in (4, 7, 10, 13, 16):
            if (t := _local(text, tz, precision)) is not None:
                facts.add((kind, key, t))
        if (t := _utc(text)) is not None:
            facts.add((kind, key, t))

    for r in resources:
        kind = r["resourceType"]
        if kind == "Patient":
            facts.update(("Patient", "identifier", v) for v in _identifiers(r))
            for name in r.get("name", []):
                if name.get("family"):
                    facts.add(("Patient", "family", name["family"].upper()))
                for given in name.get("given", []):
                    facts.add(("Patient", "given", given.upper()))
                    facts.update(("Patient", "given", g.upper()) for g in given.split())
            if r.get("birthDate"):
                facts.add(("Patient", "birthDate", r["birthDate"][:10]))
            if r.get("gender"):
                facts.add(("Patient", "gender", r["gender"]))
        elif kind == "Observation":
            for code in _codes(r.get("code")):
                facts.update(_served_observation(code, r, times))
        elif kind == "DiagnosticReport":
            for code in _codes(r.get("code")):
                facts.add(("DiagnosticReport", f"{code}.code", code))
                times("DiagnosticReport", f"{code}.effective", r.get("effectiveDateTime"))
                for ref in r.get("result", []):
                    target = by_ref.get(ref.get("reference", ""))
                    for obs_code in _codes(target.get("code") if target else None):
                        facts.add(("DiagnosticReport", f"{code}.result", obs_code))
                if r.get("basedOn"):
                    facts.add(("DiagnosticReport", f"{code}.basedOn", "yes"))
        elif kind == "ServiceRequest":
            for code in _codes(r.get("code")):
                facts.add(("ServiceRequest", f"{code}.code", code))
                facts.update(("ServiceRequest", f"{code}.identifier", v) for v in _identifiers(r))
        elif kind == "Encounter":
            klass = (r.get("class") or {}).get("code")
            if klass:
                facts.add(("Encounter", "class", klass))
            facts.update(("Encounter", "identifier", v) for v in _identifiers(r))
            period = r.get("period") or {}
            for end in ("start", "end"):
                times("Encounter", f"period.{end}", period.get(end))
    return facts


def _served_observation(code: str, r: Json, times: Any) -> set[Fact]:
    facts: set[Fact] = {("Observation", f"{code}.code", code)}
    quantity = r.get("valueQuantity")
    if quantity is not None:
        if quantity.get("value") is not None:
            facts.add(("Observation", f"{code}.value", _number(quantity["value"])))
        for unit in (quantity.get("unit"), quantity.get("code")):
            if unit:
                facts.add(("Observation", f"{code}.unit", unit.lower()))
    if r.get("valueString"):
        facts.add(("Observation", f"{code}.value", r["valueString"].strip().upper()))
    if r.get("valueCodeableConcept"):
        facts.update(
            ("Observation", f"{code}.value", v.upper()) for v in _codes(r["valueCodeableConcept"])
        )
        text = r["valueCodeableConcept"].get("text")
        if text:
            facts.add(("Observation", f"{code}.value", text.strip().upper()))
    for ext in r.get("extension", []):
        if ext.get("url", "").endswith(ORIGINAL_EXTENSION_SUFFIX) and ext.get("valueString"):
            original = ext["valueString"].split()
            facts.add(("Observation", f"{code}.value", _number(original[0])))
            if len(original) > 1:
                facts.add(("Observation", f"{code}.unit", " ".join(original[1:]).lower()))
    for ref in r.get("referenceRange", []):
        for end in ("low", "high"):
            if (ref.get(end) or {}).get("value") is not None:
                facts.add(("Observation", f"{code}.{end}", _number(ref[end]["value"])))
        if ref.get("text"):
            facts.add(("Observation", f"{code}.rangeText", ref["text"].strip()))
    for concept in r.get("interpretation", []):
        facts.update(("Observation", f"{code}.interpretation", v) for v in _codes(concept))
    times("Observation", f"{code}.effective", r.get("effectiveDateTime"))
    times("Observation", f"{code}.issued", r.get("issued"))
    return facts


_SPACE = re.compile(r"\s+")


@dataclass
class Score:
    matched: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    missing: list[Fact] = field(default_factory=list)

    def add(self, expected: list[Fact], served: set[Fact]) -> None:
        for fact in expected:
            name = category(fact)
            self.total[name] += 1
            if fact in served:
                self.matched[name] += 1
            else:
                self.missing.append(fact)

    @property
    def share(self) -> float:
        total = sum(self.total.values())
        return sum(self.matched.values()) / total if total else 1.0


# -- running a message through carepool ------------------------------------------------------------


def make_template(path: Any) -> None:
    """A migrated SQLite database at `path` with the two-member test catalogue (members `hosp`
    and `clinic`), to be copied for every message."""
    from carepool.catalog import actions as catalog_actions
    from carepool.core import migrate
    from carepool.core.auth import Principal
    from carepool.core.db import make_engine, make_session_factory
    from tests.factories import small_catalog

    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session, session.begin():
        catalog_actions.do_import_catalog(
            session, actor=Principal.system_actor("parity"), raw=small_catalog()
        )
    engine.dispose()


def served_resources(url: str, message: bytes, name: str) -> tuple[list[Json], tzinfo]:
    """Ingest one message into the (migrated, catalogued) database at `url` as member `hosp`
    and read back, as the consortium administrator, every patient's `$everything` plus their
    encounters and orders where `/fhir` serves them."""
    from zoneinfo import ZoneInfo

    from fastapi.testclient import TestClient

    from carepool.api.app import create_app
    from carepool.catalog import service as catalog_service
    from carepool.core import auth
    from carepool.core.auth import Principal
    from carepool.core.db import make_engine, make_session_factory
    from carepool.ingest import actions

    engine = make_engine(url)
    factory = make_session_factory(engine)
    actions.do_ingest(
        factory,
        actor=Principal.system_actor("parity"),
        institution_id="hosp",
        inputs=[actions.Input(name=name, data=message)],
    )
    from datetime import timedelta

    with factory() as session, session.begin():
        auth.create_user(
            session,
            username="parity-admin",
            display_name="parity",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
        token = auth.issue_token(session, username="parity-admin", ttl=timedelta(hours=1))
        tz = ZoneInfo(catalog_service.consortium_timezone(session))
    engine.dispose()
    headers = {"Authorization": f"Bearer {token}"}
    app = create_app(url)
    resources: list[Json] = []
    with TestClient(app) as client:
        patients = client.get("/fhir/Patient", params={"_count": "200"}, headers=headers)
        patients.raise_for_status()
        for entry in patients.json().get("entry", []):
            pid = entry["resource"]["id"]
            everything = client.get(f"/fhir/Patient/{pid}/$everything", headers=headers)
            everything.raise_for_status()
            resources += [e["resource"] for e in everything.json().get("entry", [])]
            for kind in ("Encounter", "ServiceRequest"):
                found = client.get(f"/fhir/{kind}", params={"patient": pid}, headers=headers)
                if found.status_code == 200:
                    resources += [e["resource"] for e in found.json().get("entry", [])]
    app.state.engine.dispose()
    seen: set[tuple[str, str]] = set()
    unique = []
    for r in resources:
        key = (r["resourceType"], r.get("id", ""))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    return unique, tz
