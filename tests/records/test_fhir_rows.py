"""Searches read plain rows of `OBSERVATION_COLUMNS`, reads read the model: both must give the
same FHIR resource, whichever branch of the conversion a result takes."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation as FhirObservation

from carepool.records.fhir import OBSERVATION_COLUMNS, observation_to_fhir
from carepool.records.models import Observation, ResultStatus

BASE: dict[str, Any] = {
    "id": "obs-1",
    "institution_id": "clinic",
    "patient_id": "pat-1",
    "report_id": "rep-1",
    "status": ResultStatus.FINAL,
    "category": "laboratory",
    "loinc_code": "718-7",
    "display": "Hemoglobin [Mass/volume] in Blood",
    "value": None,
    "unit": None,
    "ref_low": None,
    "ref_high": None,
    "original_system": "urn:lis",
    "original_code": "HB",
    "original_text": "血红蛋白",
    "value_type": "none",
    "original_value": "",
    "original_unit": "",
    "original_number": None,
    "original_ref_low": None,
    "original_ref_high": None,
    "reference_text": "",
    "value_code": "",
    "value_code_system": "",
    "interpretation": "",
    "comparator": "",
    "effective_at": datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
    "issued_at": datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
    "flags": [],
    "note": "",
}

VARIANTS: dict[str, dict[str, Any]] = {
    "standard quantity": {
        "value": 131.0,
        "unit": "g/L",
        "ref_low": 115.0,
        "ref_high": 150.0,
        "value_type": "quantity",
        "original_value": "13.1",
        "original_unit": "g/dL",
        "original_number": 13.1,
        "interpretation": "N",
        "flags": ["converted"],
        "note": "repeat",
        "reference_text": "115-150",
    },
    "original quantity": {
        "value_type": "quantity",
        "original_value": "7",
        "original_unit": "mg%",
        "original_number": 7.0,
        "original_ref_low": 1.0,
        "original_ref_high": 9.0,
    },
    "coded": {
        "value_type": "coded",
        "value_code": "260385009",
        "value_code_system": "http://snomed.info/sct",
        "original_value": "negative",
        "report_id": None,
    },
    "text": {"value_type": "string", "original_value": "see report", "category": "LAB x"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_row_of_the_search_columns_converts_like_the_model(variant: str) -> None:
    values = {**BASE, **VARIANTS[variant]}
    model = Observation(**values)
    row = SimpleNamespace(**{c: values[c] for c in OBSERVATION_COLUMNS})
    served = observation_to_fhir(model)
    assert observation_to_fhir(row) == served  # type: ignore[arg-type]
    FhirObservation.model_validate(served)
