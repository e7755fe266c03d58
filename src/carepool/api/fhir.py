"""The FHIR R4 base at /fhir (placeholder: metadata only, until the FHIR views land)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["fhir"])


@router.get("/metadata")
def metadata() -> dict[str, Any]:
    return {"resourceType": "CapabilityStatement", "status": "active", "fhirVersion": "4.0.1"}
