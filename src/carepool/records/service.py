"""Reads of the clinical store (keyword-only, like every context's service)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepool.core.errors import NotFound
from carepool.records.models import (
    RECORD_MODELS,
    Observation,
    Patient,
    PatientIdentifier,
    Provenance,
)


def get(session: Session, *, kind: str, id: str) -> Any:
    """One record of `kind` (`patient`, `encounter`, `report`, `observation`, `order`, `other`)."""
    obj = session.get(RECORD_MODELS[kind], id)
    if obj is None:
        raise NotFound(kind, id)
    return obj


def get_patients_by_identifier(session: Session, *, system: str, value: str) -> list[Patient]:
    stmt = (
        select(Patient)
        .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
        .where(PatientIdentifier.system == system, PatientIdentifier.value == value)
        .order_by(Patient.id)
    )
    return list(session.scalars(stmt))


def get_observations(
    session: Session,
    *,
    patient_id: str | None = None,
    institution_id: str | None = None,
    loinc_code: str | None = None,
    flag: str | None = None,
    limit: int | None = None,
) -> list[Observation]:
    """Observations filtered by patient, member, LOINC code; `flag` filters in Python (JSON)."""
    stmt = select(Observation)
    if patient_id is not None:
        stmt = stmt.where(Observation.patient_id == patient_id)
    if institution_id is not None:
        stmt = stmt.where(Observation.institution_id == institution_id)
    if loinc_code is not None:
        stmt = stmt.where(Observation.loinc_code == loinc_code)
    stmt = stmt.order_by(Observation.effective_at, Observation.id)
    rows = list(session.scalars(stmt))
    if flag is not None:
        rows = [r for r in rows if flag in (r.flags or [])]
    return rows[:limit] if limit is not None else rows


def iter_observations(
    session: Session, *, institution_id: str | None = None, batch: int = 1000
) -> Iterator[Observation]:
    """Every observation (of one member), in id order, fetched in batches (for re-apply)."""
    last = ""
    while True:
        stmt = select(Observation).where(Observation.id > last)
        if institution_id is not None:
            stmt = stmt.where(Observation.institution_id == institution_id)
        rows = list(session.scalars(stmt.order_by(Observation.id).limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def provenance_of(session: Session, *, record_id: str) -> list[Provenance]:
    stmt = select(Provenance).where(Provenance.record_id == record_id).order_by(Provenance.id)
    return list(session.scalars(stmt))


def counts(session: Session, *, institution_id: str | None = None) -> dict[str, int]:
    """Records per kind (of one member, or of all)."""
    out: dict[str, int] = {}
    for kind, model in RECORD_MODELS.items():
        col: Any = model
        stmt = select(func.count()).select_from(model)
        if institution_id is not None:
            stmt = stmt.where(col.institution_id == institution_id)
        out[kind] = int(session.scalar(stmt) or 0)
    out["provenance"] = int(session.scalar(select(func.count()).select_from(Provenance)) or 0)
    return out
