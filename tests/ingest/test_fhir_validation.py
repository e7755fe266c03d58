"""The FHIR connector's R4 validation (data types validated once per distinct value, then the
resource) accepts and rejects exactly what `model_validate` of the resource class does, with
the same reasons."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from carepool.ingest.connectors import ParseOptions, connector_for, fhir
from carepool.ingest.connectors.fhir import _model, _reason, _validate
from tests.ingest import feeds


def _observation(**changes: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{"system": "http://x/cat", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "Hb"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-05T08:00:00+08:00",
        "valueQuantity": {"value": 135, "unit": "g/L", "system": "http://unitsofmeasure.org"},
        "referenceRange": [{"low": {"value": 130}, "high": {"value": 175}}],
    }
    for key, value in changes.items():
        if value is None:
            res.pop(key, None)
        else:
            res[key] = value
    return res


def _outcome(check: Any, res: dict[str, Any]) -> str:
    try:
        check(res)
    except ValidationError as exc:
        return _reason(exc)
    except Exception as exc:  # the connector reports these too
        return f"{type(exc).__name__}: {exc}"
    return "valid"


CASES = [
    _observation(),
    _observation(id="o2"),  # the same data types again (remembered)
    _observation(valueQuantity={"value": "a lot", "unit": "g/L"}),
    _observation(valueQuantity={"value": 135, "unit": "g/L", "colour": "red"}),
    _observation(code={"coding": [{"system": "http://loinc.org", "code": " 718 7 "}]}),
    _observation(code={"coding": [{"code": "718-7", "userSelected": "yes"}]}),
    _observation(code=None),
    _observation(status=None),
    _observation(category=[None, {"text": "lab"}]),
    _observation(category=[{"text": "lab"}, "laboratory"]),
    _observation(category={"text": "lab"}),
    _observation(subject="Patient/p1"),
    _observation(subject=[{"reference": "Patient/p1"}]),
    _observation(valueString="high"),  # two value[x]
    _observation(effectiveDateTime="5 March"),
    _observation(referenceRange=[{"low": {"value": True}}]),
    _observation(referenceRange=[]),
    _observation(contained=[{"resourceType": "Patient", "id": "p", "gender": "robot"}]),
    _observation(interpretation=[{"coding": [{"code": "H"}]}, {"coding": [{"code": "H"}]}]),
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "张", "given": ["三"]}]},
    {"resourceType": "Patient", "id": "p1", "name": [{"family": ["张"]}], "gender": "x"},
    {"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-30"},
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}},
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": [{"code": "AMB"}]},
    {"resourceType": "Encounter", "id": "e1", "class": {"code": "AMB"}},
]


@pytest.mark.parametrize("res", CASES)
def test_validation_answers_as_the_resource_model_does(res: dict[str, Any]) -> None:
    before = copy.deepcopy(res)
    model = get_fhir_model_class(res["resourceType"])
    expected = _outcome(model.model_validate, res)
    resolved = _model(res["resourceType"])
    assert resolved is model
    for _ in range(2):  # once fresh, once from what was remembered
        assert _outcome(lambda r: _validate(model, r), res) == expected
    assert res == before  # the resource is not changed


def _parse(data: bytes) -> list[tuple[str, list[tuple[str, str]], list[Any]]]:
    units = connector_for("fhir").units(data, source="b.json", options=ParseOptions())
    return [(u.position, u.errors, [p.record for p in u.records]) for u in units]


def test_a_feed_parses_as_with_the_resource_models_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = feeds.fhir_bundle_dict()
    bundle["entry"].append(
        {"resource": _observation(id="bad", valueQuantity={"value": "x", "unit": "g/L"})}
    )
    data = json.dumps(bundle).encode() + b"\n"
    ndjson = feeds.fhir_ndjson()
    ours = _parse(data), _parse(ndjson)
    monkeypatch.setattr(fhir, "_validate", lambda model, res: model.model_validate(res))
    assert (_parse(data), _parse(ndjson)) == ours
    rejected = [errors for _pos, errors, _records in ours[0] if errors]
    assert any("bad" in str(e) or "valueQuantity.value" in str(e) for e in rejected)
