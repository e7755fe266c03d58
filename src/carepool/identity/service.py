"""Reads of the master patient index: persons and their records, candidates, history, runs.

`access_*` functions check the caller (scope `Identity.read`, and for a member's user that the
person or pair involves a record of their member) on one line per condition; plain getters do
not check and serve other contexts (records' FHIR views ask who a record belongs to).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from carepool.core.auth import Principal
from carepool.core.errors import NotFound, PermissionDenied
from carepool.identity import matching
from carepool.identity.models import (
    Candidate,
    CandidateStatus,
    Exclusion,
    HistoryEvent,
    LinkRun,
    Person,
    PersonLink,
    PersonStatus,
    RecordFacts,
)
from carepool.identity.normalise import FEATURE_COLUMNS, PatientFacts
from carepool.records.models import Patient, PatientIdentifier

# -- patient records (read from the clinical store) -----------------------------------------------


_FACT_COLUMNS = (
    Patient.id,
    Patient.institution_id,
    Patient.name,
    Patient.family,
    Patient.given,
    Patient.sex,
    Patient.birth_date,
    Patient.national_id,
    Patient.phone,
    Patient.address,
)


def _facts(session: Session, rows: list[Any]) -> list[PatientFacts]:
    ids: dict[str, list[tuple[str, str]]] = {}
    keys = [r[0] for r in rows]
    for i in range(0, len(keys), 1000):
        stmt = select(
            PatientIdentifier.patient_id, PatientIdentifier.system, PatientIdentifier.value
        ).where(PatientIdentifier.patient_id.in_(keys[i : i + 1000]))
        for pid, system, value in session.execute(stmt):
            ids.setdefault(pid, []).append((system, value))
    return [
        PatientFacts(
            patient_id=r[0],
            institution_id=r[1],
            name=r[2] or "",
            family=r[3] or "",
            given=r[4] or "",
            sex=r[5].value if r[5] is not None else "unknown",
            birth_date=r[6],
            national_id=r[7],
            phone=r[8] or "",
            address=r[9] or "",
            identifiers=tuple(sorted(ids.get(r[0], ()))),
        )
        for r in rows
    ]


def iter_patient_facts(session: Session, *, batch: int = 5000) -> Iterator[PatientFacts]:
    """Every real (non-placeholder) patient record as plain facts, in id order, batched.

    Reads the records context's table directly, column by column, for speed: a link run reads
    every record of the consortium. (Belongs in `records.service` once that module is free.)
    """
    last = ""
    while True:
        stmt = (
            select(*_FACT_COLUMNS)
            .where(Patient.id > last, Patient.stub.is_(False))
            .order_by(Patient.id)
            .limit(batch)
        )
        rows = session.execute(stmt).all()
        if not rows:
            return
        yield from _facts(session, list(rows))
        last = rows[-1][0]


def patient_facts(session: Session, *, patient_ids: Iterable[str]) -> list[PatientFacts]:
    """The facts of the given (non-placeholder) records; unknown ids are left out."""
    ids = sorted(set(patient_ids))
    out: list[PatientFacts] = []
    for i in range(0, len(ids), 1000):
        stmt = select(*_FACT_COLUMNS).where(
            Patient.id.in_(ids[i : i + 1000]), Patient.stub.is_(False)
        )
        out.extend(_facts(session, list(session.execute(stmt).all())))
    return out


# -- what the index last evaluated ----------------------------------------------------------------

_RECORD_COLUMNS = tuple(getattr(RecordFacts, c) for c in FEATURE_COLUMNS[1:])


def _row(values: Any) -> dict[str, Any]:
    return dict(zip(FEATURE_COLUMNS, values, strict=True))


def stored_hashes(session: Session, *, patient_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Patient id -> the hash of the features its links were last evaluated on."""
    stmt = select(RecordFacts.patient_id, RecordFacts.facts_hash)
    if patient_ids is None:
        return {r[0]: r[1] for r in session.execute(stmt)}
    ids = sorted(set(patient_ids))
    out: dict[str, str] = {}
    for i in range(0, len(ids), 1000):
        part = stmt.where(RecordFacts.patient_id.in_(ids[i : i + 1000]))
        out.update({r[0]: r[1] for r in session.execute(part)})
    return out


def blocking_candidates(
    session: Session, row: dict[str, Any], *, limit: int = 1000
) -> list[dict[str, Any]]:
    """Features rows of the indexed records that share a blocking key with `row` (the same
    keys a full run blocks on), each an indexed lookup: no full scan."""
    rules: list[Any] = []
    if row["nid"]:
        rules.append(RecordFacts.nid == row["nid"])
    if row["phone"]:
        rules.append(RecordFacts.phone == row["phone"])
    if row["name_key"] and row["birth_year"]:
        rules.append(
            (RecordFacts.name_key == row["name_key"])
            & (RecordFacts.birth_year == row["birth_year"])
        )
        rules.append(
            (RecordFacts.name_rev == row["name_key"])
            & (RecordFacts.birth_year == row["birth_year"])
        )
    if row["dob"] and row["name_initial"]:
        rules.append(
            (RecordFacts.dob == row["dob"]) & (RecordFacts.name_initial == row["name_initial"])
        )
    if row["name_key"] and row["address"]:
        rules.append(
            (RecordFacts.name_key == row["name_key"]) & (RecordFacts.address == row["address"])
        )
    out: dict[str, dict[str, Any]] = {}
    for rule in rules:
        stmt = (
            select(RecordFacts.patient_id, *_RECORD_COLUMNS)
            .where(rule, RecordFacts.patient_id != row["unique_id"])
            .limit(limit)
        )
        for values in session.execute(stmt):
            out.setdefault(values[0], _row(values))
    return list(out.values())


def features_of(session: Session, *, patient_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Patient id -> its features row as the index last stored it."""
    ids = sorted(set(patient_ids))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 1000):
        stmt = select(RecordFacts.patient_id, *_RECORD_COLUMNS).where(
            RecordFacts.patient_id.in_(ids[i : i + 1000])
        )
        out.update({v[0]: _row(v) for v in session.execute(stmt)})
    return out


def patient_summaries(session: Session, *, patient_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What a reviewer needs to see of each record: member, local id, name, sex, birth, ids."""
    ids = sorted(set(patient_ids))
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for p in session.scalars(select(Patient).where(Patient.id.in_(ids[i : i + 500]))):
            out[p.id] = {
                "patient_id": p.id,
                "institution_id": p.institution_id,
                "local_id": p.local_id,
                "name": p.name,
                "name_pinyin": p.name_pinyin,
                "sex": p.sex.value,
                "birth_date": p.birth_date.isoformat() if p.birth_date else None,
                "national_id": p.national_id,
                "phone": p.phone,
                "address": p.address,
            }
    return out


def patient_institution(session: Session, *, patient_id: str) -> str | None:
    """The member that holds a patient record (None if there is no such record)."""
    return session.scalar(select(Patient.institution_id).where(Patient.id == patient_id))


# -- persons --------------------------------------------------------------------------------------


def get_person(session: Session, *, id: str) -> Person:
    person = session.get(Person, id)
    if person is None:
        raise NotFound("person", id)
    return person


def person_of(session: Session, *, patient_id: str) -> str | None:
    """The person a record belongs to (None until a link run has seen it)."""
    return session.scalar(select(PersonLink.person_id).where(PersonLink.patient_id == patient_id))


def resolve(session: Session, *, person_id: str) -> Person:
    """The active person behind an id (following merges)."""
    person = get_person(session, id=person_id)
    seen = {person.id}
    while person.merged_into is not None:
        person = get_person(session, id=person.merged_into)
        if person.id in seen:
            break
        seen.add(person.id)
    return person


def records_of(session: Session, *, person_id: str) -> list[tuple[str, str]]:
    """(patient id, member) of every record of a person, in id order."""
    stmt = (
        select(PersonLink.patient_id, PersonLink.institution_id)
        .where(PersonLink.person_id == person_id)
        .order_by(PersonLink.patient_id)
    )
    return [(r[0], r[1]) for r in session.execute(stmt)]


def persons_of(session: Session, *, patient_ids: Iterable[str]) -> dict[str, str]:
    """Patient record id -> person id, for the records a link run has seen."""
    ids = sorted(set(patient_ids))
    out: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        stmt = select(PersonLink.patient_id, PersonLink.person_id).where(
            PersonLink.patient_id.in_(ids[i : i + 500])
        )
        out.update({r[0]: r[1] for r in session.execute(stmt)})
    return out


def records_of_persons(
    session: Session, *, person_ids: Iterable[str]
) -> dict[str, list[tuple[str, str]]]:
    """Person id -> (patient id, member) of each of their records, in id order."""
    ids = sorted(set(person_ids))
    out: dict[str, list[tuple[str, str]]] = {}
    for i in range(0, len(ids), 500):
        stmt = (
            select(PersonLink.person_id, PersonLink.patient_id, PersonLink.institution_id)
            .where(PersonLink.person_id.in_(ids[i : i + 500]))
            .order_by(PersonLink.patient_id)
        )
        for person, patient, member in session.execute(stmt):
            out.setdefault(person, []).append((patient, member))
    return out


def links_of(session: Session, *, person_id: str) -> list[PersonLink]:
    stmt = (
        select(PersonLink).where(PersonLink.person_id == person_id).order_by(PersonLink.patient_id)
    )
    return list(session.scalars(stmt))


def patients_linked_to_member(
    institution_id: str, *, exclude_persons: Select[Any] | None = None
) -> Select[Any]:
    """A subquery of the record ids of every person with a record at `institution_id`
    (optionally leaving out persons in `exclude_persons`): the member's own patients, as
    recorded anywhere in the consortium."""
    own_persons = select(PersonLink.person_id).where(PersonLink.institution_id == institution_id)
    stmt = select(PersonLink.patient_id).where(PersonLink.person_id.in_(own_persons))
    if exclude_persons is not None:
        stmt = stmt.where(PersonLink.person_id.not_in(exclude_persons))
    return stmt


def get_persons(
    session: Session, *, institution_id: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Person], int]:
    """Active persons, most recently changed first (of one member: those with a record
    there, through the index on links by member)."""
    stmt = select(Person).where(Person.status == PersonStatus.ACTIVE)
    if institution_id is not None:
        own = select(PersonLink.person_id).where(PersonLink.institution_id == institution_id)
        stmt = stmt.where(Person.id.in_(own))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(Person.updated_at.desc(), Person.id).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def count_persons(session: Session) -> int:
    stmt = select(func.count()).select_from(Person).where(Person.status == PersonStatus.ACTIVE)
    return int(session.scalar(stmt) or 0)


def history_of(session: Session, *, person_id: str) -> list[HistoryEvent]:
    stmt = (
        select(HistoryEvent)
        .where(or_(HistoryEvent.person_id == person_id, HistoryEvent.other_id == person_id))
        .order_by(HistoryEvent.id)
    )
    return list(session.scalars(stmt))


def get_history_event(session: Session, *, id: int) -> HistoryEvent:
    row = session.get(HistoryEvent, id)
    if row is None:
        raise NotFound("identity history event", str(id))
    return row


def excluded_pairs(session: Session) -> set[tuple[str, str]]:
    return {(r[0], r[1]) for r in session.execute(select(Exclusion.patient_a, Exclusion.patient_b))}


# -- access ---------------------------------------------------------------------------------------


def require_involved(caller: Principal, institutions: Iterable[str], what: str) -> None:
    """A member's user may only act on persons or pairs that involve a record of their member."""
    if caller.consortium_wide:
        return
    members = set(institutions)
    if caller.institution_id is None or caller.institution_id not in members:
        raise PermissionDenied(
            f"{caller.username!r} belongs to {caller.institution_id!r}; {what} involves no "
            f"record of that member (only of {', '.join(sorted(members)) or 'none'})",
            institution=sorted(members)[0] if members else None,
        )


def access_person_by_id(session: Session, caller: Principal, person_id: str) -> Person:
    """The person (merged ids resolve to the survivor), if the caller may see it."""
    caller.require_scope("Identity", "read")
    person = resolve(session, person_id=person_id)
    institutions = {m for _p, m in records_of(session, person_id=person.id)}
    require_involved(caller, institutions, f"person {person_id}")
    return person


def access_candidate_by_id(session: Session, caller: Principal, id: int) -> Candidate:
    caller.require_scope("Identity", "read")
    row = get_candidate(session, id=id)
    require_involved(caller, {row.institution_a, row.institution_b}, f"candidate pair {id}")
    return row


# -- candidates and runs --------------------------------------------------------------------------


def get_candidate(session: Session, *, id: int) -> Candidate:
    row = session.get(Candidate, id)
    if row is None:
        raise NotFound("candidate pair", str(id))
    return row


def get_candidates(
    session: Session,
    *,
    status: CandidateStatus | None = CandidateStatus.OPEN,
    institution_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Candidate], int]:
    """Candidate pairs, most likely first (of one member: either side at that member)."""
    stmt = select(Candidate)
    if status is not None:
        stmt = stmt.where(Candidate.status == status)
    if institution_id is not None:
        stmt = stmt.where(
            or_(
                Candidate.institution_a == institution_id, Candidate.institution_b == institution_id
            )
        )
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = (
        stmt.order_by(Candidate.match_probability.desc(), Candidate.id).limit(limit).offset(offset)
    )
    return list(session.scalars(stmt)), int(total)


def get_run(session: Session, *, id: str) -> LinkRun:
    run = session.get(LinkRun, id)
    if run is None:
        raise NotFound("link run", id)
    return run


def get_runs(session: Session, *, limit: int = 50, offset: int = 0) -> tuple[list[LinkRun], int]:
    total = session.scalar(select(func.count()).select_from(LinkRun)) or 0
    stmt = (
        select(LinkRun).order_by(LinkRun.started_at.desc(), LinkRun.id).limit(limit).offset(offset)
    )
    return list(session.scalars(stmt)), int(total)


# -- shapes ---------------------------------------------------------------------------------------


def run_to_dict(run: LinkRun) -> dict[str, Any]:
    seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
    return {
        "run_id": run.id,
        "actor": run.actor,
        "channel": run.channel,
        "status": run.status.value,
        "phase": run.phase,
        "progress": round(run.progress, 4),
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": seconds,
        "records": run.records,
        "pairs": run.pairs,
        "auto_links": run.auto_links,
        "review": run.review,
        "excluded": run.excluded,
        "new_persons": run.new_persons,
        "persons": run.persons,
        "thresholds": run.thresholds,
        "model": run.model,
        "timings": run.timings,
        "error": run.error,
    }


def candidate_to_dict(
    row: Candidate, records: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "patient_a": row.patient_a,
        "patient_b": row.patient_b,
        "institution_a": row.institution_a,
        "institution_b": row.institution_b,
        "match_probability": row.match_probability,
        "match_weight": round(row.match_weight, 3),
        "fields": row.detail,
        "reason": row.reason,
        "label": matching.label(row.detail),
        "status": row.status.value,
        "run_id": row.run_id,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "note": row.note,
    }
    if records is not None:
        out["records"] = [records.get(row.patient_a), records.get(row.patient_b)]
    return out


def history_to_dict(row: HistoryEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "action": row.action.value,
        "person_id": row.person_id,
        "other_id": row.other_id,
        "patient_ids": row.patient_ids,
        "cause": row.cause,
        "candidate_id": row.candidate_id,
        "run_id": row.run_id,
        "match_probability": row.match_probability,
        "reverses": row.reverses,
        "undone_by": row.undone_by,
        "actor": row.actor,
        "at": row.at.isoformat(),
        "reason": row.reason,
    }


def person_to_dict(
    session: Session, person: Person, *, with_history: bool = True
) -> dict[str, Any]:
    links = links_of(session, person_id=person.id)
    summaries = patient_summaries(session, patient_ids=[lk.patient_id for lk in links])
    out: dict[str, Any] = {
        "person_id": person.id,
        "status": person.status.value,
        "merged_into": person.merged_into,
        "created_at": person.created_at.isoformat(),
        "updated_at": person.updated_at.isoformat(),
        "institutions": sorted({lk.institution_id for lk in links}),
        "records": [
            {
                **summaries.get(lk.patient_id, {"patient_id": lk.patient_id}),
                "link": {
                    "source": lk.source.value,
                    "match_probability": lk.match_probability,
                    "linked_by": lk.linked_by,
                    "linked_at": lk.linked_at.isoformat(),
                },
            }
            for lk in links
        ],
    }
    if with_history:
        out["history"] = [history_to_dict(h) for h in history_of(session, person_id=person.id)]
    return out


def records_shared_with(
    session: Session, *, institution_id: str, other_institution_id: str
) -> list[str]:
    """Record ids at `institution_id` whose person also has a record at `other_institution_id`,
    in id order (a clinic's patients the county hospital knows too)."""
    other = aliased(PersonLink)
    stmt = (
        select(PersonLink.patient_id)
        .join(other, other.person_id == PersonLink.person_id)
        .where(
            PersonLink.institution_id == institution_id,
            other.institution_id == other_institution_id,
        )
        .distinct()
        .order_by(PersonLink.patient_id)
    )
    return list(session.scalars(stmt))
