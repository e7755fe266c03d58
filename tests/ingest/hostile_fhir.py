"""Hostile FHIR JSON and NDJSON feeds, one function per case (deterministic: no randomness).

Each returns the bytes a sender might deliver; tests/ingest/test_fhir_hostile.py says what the
connector must make of them. Resource ids tell the cases apart in the store.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

PATIENT_URL = "urn:uuid:7b0c1f44-0000-4000-8000-000000000001"


def patient(pid: str = "hp-1", **changes: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "urn:hosp:mrn",
                "value": f"MRN-{pid}",
            },
            {
                "type": {"coding": [{"code": "NNCHN"}]},
                "system": "urn:cn:resident-id",
                "value": "110101199001011234",
            },
            {"system": "urn:hosp:insurance", "value": "INS-77", "type": {"text": "insurance card"}},
            {"value": "LEGACY-9"},
        ],
        "name": [{"family": "王", "given": ["芳"]}],
        "gender": "female",
        "birthDate": "1990-01-01",
    }
    res.update(changes)
    return res


def observation(oid: str = "ho-1", subject: str = "Patient/hp-1", **changes: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
        "subject": {"reference": subject},
        "effectiveDateTime": "2026-03-05T08:00:00+08:00",
        "valueQuantity": {
            "value": 5.4,
            "unit": "mmol/L",
            "system": "http://unitsofmeasure.org",
            "code": "mmol/L",
        },
    }
    res.update(changes)
    return res


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def misspelled_resource_type() -> bytes:
    return _json(observation(resourceType="Observaton"))


def lowercase_resource_type() -> bytes:
    return _json(patient(resourceType="patient"))


def data_type_as_resource() -> bytes:
    return _json({"resourceType": "Quantity", "value": 1})


def missing_resource_type() -> bytes:
    res = patient()
    del res["resourceType"]
    return _json(res)


def deeply_nested(levels: int = 5000) -> bytes:
    """A Patient whose extension nests `levels` arrays deep."""
    return (
        b'{"resourceType":"Patient","id":"deep","extension":' + b"[" * levels + b"]" * levels + b"}"
    )


def deeply_nested_ndjson(levels: int = 5000) -> bytes:
    """Three NDJSON lines, the second nested `levels` objects deep."""
    return (
        b"\n".join(
            [
                _json(patient("nd-a")),
                b'{"a":' * levels + b"1" + b"}" * levels,
                _json(patient("nd-b")),
            ]
        )
        + b"\n"
    )


def invalid_json_pretty() -> bytes:
    """A pretty-printed Patient with a missing value on line 4 (column 13)."""
    return (
        b'{\n  "resourceType": "Patient",\n  "id": "bad-json",\n  "gender": ,\n'
        b'  "birthDate": "1990-01-01"\n}\n'
    )


def huge_number() -> bytes:
    return _json(observation("huge"))[:-1] + b', "valueInteger": 1' + b"0" * 5000 + b"}"


def huge_exponent() -> bytes:
    return _json(observation("huge-exp", valueQuantity=None)).replace(
        b'"valueQuantity": null', b'"valueQuantity": {"value": 1e400}'
    )


def duplicate_keys() -> bytes:
    return b'{"resourceType": "Patient", "id": "dup", "name": [{"family": "Li", "family": "Wang"}]}'


def nan_value() -> bytes:
    return _json(observation("nan", valueQuantity=None)).replace(
        b'"valueQuantity": null', b'"valueQuantity": {"value": NaN}'
    )


def bundle(kind: str, entries: list[dict[str, Any]], bid: str = "hb") -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": f"{bid}-{kind}", "type": kind, "entry": entries}


def entries_with_one_bad(prefix: str = "b") -> list[dict[str, Any]]:
    """A Patient (referred to by its fullUrl only, which is not its id), two Observations, an
    invalid Observation (no status) and a Claim (not modelled)."""
    pid = f"{prefix}-p"
    return [
        {
            "fullUrl": PATIENT_URL,
            "resource": patient(pid),
            "request": {"method": "PUT", "url": f"Patient/{pid}"},
        },
        {"fullUrl": f"urn:uuid:{prefix}-o1", "resource": observation(f"{prefix}-o1", PATIENT_URL)},
        {
            "fullUrl": f"urn:uuid:{prefix}-o2",
            "resource": observation(f"{prefix}-o2", PATIENT_URL, status=None) | {"status": "final"},
        },
        {
            "fullUrl": f"urn:uuid:{prefix}-bad",
            "resource": {
                k: v for k, v in observation(f"{prefix}-bad", PATIENT_URL).items() if k != "status"
            },
        },
        {
            "fullUrl": f"urn:uuid:{prefix}-claim",
            "resource": {
                "resourceType": "Claim",
                "id": f"{prefix}-claim",
                "status": "active",
                "use": "claim",
                "created": "2026-03-05",
                "type": {"text": "x"},
                "patient": {"reference": PATIENT_URL},
                "provider": {"display": "hosp"},
                "priority": {"text": "normal"},
                "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "c"}}],
            },
        },
    ]


def bundle_with_bad_entry(kind: str) -> bytes:
    """A `kind` bundle, pretty-printed (entry spans are not one line each), one entry invalid
    and one entry whose JSON is refused (a key twice)."""
    entries = entries_with_one_bad(kind[:3])
    text = json.dumps(bundle(kind, entries), ensure_ascii=False, indent=2)
    # the last entry gets a duplicate key: valid JSON syntax, not acceptable FHIR JSON
    dup = (
        '{"fullUrl": "urn:uuid:dup", "resource": {"resourceType": "Patient", "id": "x", "id": "y"}}'
    )
    return (text[: text.rindex("]")].rstrip() + ",\n    " + dup + "\n  ]\n}\n").encode()


def transaction_all_good() -> bytes:
    entries = [e for e in entries_with_one_bad("tg") if not e["fullUrl"].endswith("-bad")]
    return _json(bundle("transaction", entries))


def history_bundle() -> bytes:
    """Two versions of one Patient, newest first (as `_history` returns them), and a deletion."""
    newer = patient("hist", name=[{"family": "New", "given": ["Name"]}], meta={"versionId": "2"})
    older = patient("hist", name=[{"family": "Old", "given": ["Name"]}], meta={"versionId": "1"})
    return _json(
        bundle(
            "history",
            [
                {
                    "fullUrl": "Patient/hist",
                    "resource": newer,
                    "request": {"method": "PUT", "url": "Patient/hist"},
                },
                {
                    "fullUrl": "Patient/hist",
                    "resource": older,
                    "request": {"method": "POST", "url": "Patient"},
                },
                {"request": {"method": "DELETE", "url": "Patient/gone"}},
            ],
        )
    )


def ndjson_with_bad_lines() -> bytes:
    """Five lines: good, invalid JSON, not an object, invalid UTF-8 (GBK), good; CRLF endings."""
    return (
        b"\r\n".join(
            [
                _json(patient("nl-1")),
                b'{"resourceType": "Patient", "id": ',
                b"[1, 2]",
                '{"resourceType":"Patient","id":"nl-gbk","name":[{"family":"张"}]}'.encode("gbk"),
                _json(observation("nl-o", "Patient/nl-1")),
            ]
        )
        + b"\r\n"
    )


def values_as_sent() -> bytes:
    """A bundle: a Patient with an invalid gender, Observations with comparators, an invalid
    status, a component comparator, an invalid comparator."""
    obs = [
        observation("cmp-lt", valueQuantity={"value": 0.2, "comparator": "<", "unit": "mg/dL"}),
        observation("cmp-ge", valueQuantity={"value": 90, "comparator": ">=", "unit": "mL/min"}),
        observation("bad-status", status="done"),
        observation("bad-cmp", valueQuantity={"value": 3, "comparator": "~", "unit": "mg/dL"}),
        observation(
            "panel",
            valueQuantity=None,
            component=[
                {
                    "code": {"text": "a"},
                    "valueQuantity": {"value": 5, "comparator": ">", "unit": "g/L"},
                },
            ],
        ),
    ]
    for o in obs:
        if o.get("valueQuantity") is None:
            o.pop("valueQuantity", None)
    entries = [{"resource": patient(gender="M")}] + [{"resource": o} for o in obs]
    return _json(bundle("collection", entries))


def invalid_birth_date() -> bytes:
    return _json(patient("bad-date", birthDate="1980-13-45"))


def unmodelled_resources() -> bytes:
    claim = entries_with_one_bad("um")[-1]["resource"]
    claim["patient"] = {"reference": "Patient/hp-1"}
    entries = [
        {"resource": patient()},
        {"resource": claim},
        {
            "resource": {
                "resourceType": "Condition",
                "id": "um-c",
                "subject": {"reference": "Patient/hp-1"},
                "code": {"text": "flu"},
            }
        },
        {"resource": observation("um-o", contained=[{"resourceType": "Specimen", "id": "s1"}])},
    ]
    return _json(bundle("collection", entries))


def utf8_bom() -> bytes:
    return codecs.BOM_UTF8 + _json(patient("bom8"))


def utf16_bom() -> bytes:
    return json.dumps(patient("bom16"), ensure_ascii=False).encode("utf-16")


def utf32_bom() -> bytes:
    return json.dumps(patient("bom32"), ensure_ascii=False).encode("utf-32")


def utf16_without_bom() -> bytes:
    return json.dumps(patient("nobom16"), ensure_ascii=False).encode("utf-16-le")


def gbk_undeclared() -> bytes:
    return json.dumps(patient("gbk"), ensure_ascii=False).encode("gbk")


def latin1_undeclared() -> bytes:
    return json.dumps(
        patient("latin", name=[{"family": "MÜLLER", "given": ["JOSÉ"]}]), ensure_ascii=False
    ).encode("latin-1")
