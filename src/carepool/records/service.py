"""Reads of the clinical store (keyword-only, like every context's service)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from carepool.catalog.models import Consortium
from carepool.core.errors import NotFound
from carepool.identity.models import PersonLink
from carepool.records.consent.models import DEFAULT_SHARING, PersonConsent, Sharing
from carepool.records.models import (
    RECORD_MODELS,
    Observation,
    Patient,
    PatientIdentifier,
    Provenance,
    RecordVersion,
)


def get(session: Session, *, kind: str, id: str) -> Any:
    """One record of `kind` (`patient`, `encounter`, `report`, `observation`, `order`, `other`)."""
    obj = session.get(RECORD_MODELS[kind], id)
    if obj is None:
        raise NotFound(kind, id)
    return obj


@dataclass(frozen=True)
class PersonRecords:
    """A patient record's member, its person, the person's records and their consent."""

    member: str
    person_id: str | None
    records: list[tuple[str, str]]  # (patient record id, member) of the person, in id order
    sharing: Sharing
    timezone: str  # the consortium's, for date parameters


@cache
def _person_records_query() -> Select[Any]:
    """Built once: a statement with aliases costs more to build than to run."""
    link = aliased(PersonLink)
    other = aliased(PersonLink)
    timezone = select(Consortium.timezone).limit(1).scalar_subquery()
    return (
        select(
            Patient.institution_id,
            link.person_id,
            other.patient_id,
            other.institution_id,
            PersonConsent.sharing,
            timezone,
        )
        .select_from(Patient)
        .outerjoin(link, link.patient_id == Patient.id)
        .outerjoin(other, other.person_id == link.person_id)
        .outerjoin(PersonConsent, PersonConsent.person_id == link.person_id)
        .where(Patient.id == bindparam("patient_id"))
        .order_by(other.patient_id)
    )


def person_records(session: Session, *, patient_id: str) -> PersonRecords | None:
    """What deciding access to one patient record needs, in one query (None: no such record).

    The same answers as identity's `patient_institution`, `person_of` and `records_of`, consent's
    `sharing_of` and catalog's `consortium_timezone`, asked one at a time.
    """
    rows = session.execute(_person_records_query(), {"patient_id": patient_id}).all()
    if not rows:
        return None
    member, person_id, _p, _m, sharing, tz = rows[0]
    records = [(r[2], r[3]) for r in rows if r[2] is not None]
    return PersonRecords(
        member=member,
        person_id=person_id,
        records=records,
        sharing=sharing if sharing is not None else DEFAULT_SHARING,
        timezone=tz or "Asia/Shanghai",
    )


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


def patient_ids_of_run(session: Session, *, run_id: str) -> list[str]:
    """The patient records an ingest run stored or updated (those with a provenance row of the
    run: duplicates write none)."""
    return list(
        session.scalars(
            select(Provenance.record_id)
            .where(Provenance.run_id == run_id, Provenance.record_type == "patient")
            .distinct()
            .order_by(Provenance.record_id)
        )
    )


def versions_of(session: Session, *, record_id: str) -> list[RecordVersion]:
    """The contents a record had before each update replaced it, oldest first (the current
    content is the record itself; `provenance_of` says where each version came from)."""
    stmt = (
        select(RecordVersion)
        .where(RecordVersion.record_id == record_id)
        .order_by(RecordVersion.replaced_at, RecordVersion.id)
    )
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
