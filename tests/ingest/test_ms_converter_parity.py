"""HL7 v2 samples with an expected bundle from Microsoft's FHIR-Converter: the facts it derives
are served by carepool's `/fhir` (tests/ingest/parity.py; `benchmarks/hl7_parity.py` prints the
table). Issue 11 asks for 95 %; FLOOR is where the code stands, so a regression fails here.
(Skips without ../shared.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.ingest.parity import (
    Score,
    category,
    expected_facts,
    make_template,
    served_facts,
    served_resources,
)

FLOOR = 0.73


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "template.db"
    make_template(path)
    return path


def test_converter_facts_are_served(shared_dir: Path, template: Path, tmp_path: Path) -> None:
    folder = shared_dir / "data" / "hl7v2-messages"
    expected_files = sorted((folder / "expected-fhir-ms-converter").glob("*-expected.json"))
    assert expected_files
    total = Score()
    for expected in expected_files:
        name = expected.name.removesuffix("-expected.json")
        db = tmp_path / f"{name}.db"
        shutil.copy(template, db)
        message = folder / f"{name}.hl7"
        resources, tz = served_resources(f"sqlite:///{db}", message.read_bytes(), message.name)
        assert any(r["resourceType"] == "Patient" for r in resources), name
        total.add(expected_facts(json.loads(expected.read_text())), served_facts(resources, tz))
    # what every message must get right whatever else is missing
    for must in ("birth date", "sex", "ranges", "flags"):
        assert total.matched[must] == total.total[must], (must, total.missing)
    assert total.share >= FLOOR, sorted({category(f) for f in total.missing})


def test_parity_scoring_counts_what_is_missing() -> None:
    """The scorer itself: a fact served counts, one not served is listed as missing."""
    from zoneinfo import ZoneInfo

    bundle = {
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": "p",
                    "gender": "male",
                    "birthDate": "1924-10-10",
                    "identifier": [{"value": "MRN-1"}],
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o",
                    "code": {"coding": [{"code": "718-7"}]},
                    "valueQuantity": {"value": 13.5, "code": "g/dL"},
                    "effectiveDateTime": "2014-10-06T06:27:00+07:00",
                }
            },
        ]
    }
    served = [
        {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1924-10-10"},
        {
            "resourceType": "Observation",
            "id": "y",
            "code": {"coding": [{"code": "718-7"}]},
            "valueQuantity": {"value": 135, "unit": "g/L", "code": "g/L"},
            "extension": [{"url": "urn:x:original-value", "valueString": "13.5 g/dL"}],
            "effectiveDateTime": "2014-10-05T23:27:00+00:00",
        },
    ]
    score = Score()
    score.add(expected_facts(bundle), served_facts(served, ZoneInfo("Asia/Shanghai")))
    assert score.missing == [("Patient", "identifier", "MRN-1")]
    assert score.matched["times"] == 1 and score.matched["values"] == 1
