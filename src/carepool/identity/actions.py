"""Writes of the master patient index: link runs, review decisions, merge, unmerge, detach.

Every decision a person takes (accept, reject, merge, unmerge, detach, consent) is one
`do_<verb>_<noun>` in the caller's transaction, with one audit row per member involved and an
outbox event. A link run is a long job: like an ingest run it takes a session *factory*, shows
its phase and progress in `identity_run`, and applies its result in one transaction; every
merge it makes has a history row and an event, and the run has one audit row.

Merging never loses information: the absorbed person stays (status `merged`, `merged_into` the
survivor) and the history row lists the records that moved, so an unmerge moves exactly those
back. An unmerge or a rejected pair also records that the records are different people
(`identity_exclusion`), so a later run does not join them again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from carepool.core import audit, events
from carepool.core.audit import AuditAction, AuditOutcome
from carepool.core.auth import Principal
from carepool.core.db import transaction
from carepool.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from carepool.core.time import utcnow
from carepool.identity import matching, service
from carepool.identity.models import (
    Candidate,
    CandidateStatus,
    Exclusion,
    HistoryAction,
    HistoryEvent,
    LinkRun,
    LinkSource,
    Person,
    PersonLink,
    PersonStatus,
    RecordFacts,
    RunStatus,
)
from carepool.identity.normalise import FEATURE_COLUMNS, facts_hash, features
from carepool.records.consent import actions as consent_actions
from carepool.records.consent import service as consent_service
from carepool.records.consent.models import PersonConsent, Sharing

ProgressFn = Callable[[str, float], None]


def new_person_id() -> str:
    return f"psn-{uuid.uuid4().hex}"


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def _audit(
    session: Session,
    *,
    actor: Principal,
    action: AuditAction,
    entity_type: str,
    entity_id: str,
    institutions: Iterable[str],
    detail: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    source: str,
) -> None:
    """One audit row per member involved, so each member's trail shows what touched its records."""
    members: list[str | None] = list(sorted(set(institutions))) or [None]
    for institution in members:
        audit.record(
            session,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_institution=institution,
            before=before,
            after=after,
            detail=detail,
            source=source,
        )


def _add_exclusions(
    session: Session, actor: Principal, left: Iterable[str], right: Iterable[str], reason: str
) -> int:
    added = 0
    right = list(right)
    for a in left:
        for b in right:
            if a == b:
                continue
            key = _pair(a, b)
            if session.get(Exclusion, key) is None:
                session.add(
                    Exclusion(
                        patient_a=key[0], patient_b=key[1], reason=reason, created_by=actor.username
                    )
                )
                added += 1
    return added


def _exclusions_between(session: Session, left: list[str], right: list[str]) -> list[Exclusion]:
    if not left or not right:
        return []
    stmt = select(Exclusion).where(
        (Exclusion.patient_a.in_(left) & Exclusion.patient_b.in_(right))
        | (Exclusion.patient_a.in_(right) & Exclusion.patient_b.in_(left))
    )
    return list(session.scalars(stmt))


def _active(session: Session, person_id: str) -> Person:
    person = service.get_person(session, id=person_id)
    if person.status is not PersonStatus.ACTIVE:
        raise Conflict(
            f"person {person_id} was merged into {person.merged_into}; act on that person"
        )
    return person


# -- merge ----------------------------------------------------------------------------------------


def _merge(
    session: Session,
    *,
    actor: Principal,
    survivor: Person,
    other: Person,
    cause: str,
    source: LinkSource,
    reason: str,
    candidate_id: int | None = None,
    probability: float | None = None,
    channel: str,
) -> HistoryEvent:
    moved = [p for p, _m in service.records_of(session, person_id=other.id)]
    kept = [p for p, _m in service.records_of(session, person_id=survivor.id)]
    blocked = _exclusions_between(session, moved, kept)
    if blocked:
        first = blocked[0]
        raise Conflict(
            f"records {first.patient_a} and {first.patient_b} were marked as different people "
            f"({first.reason}, by {first.created_by}); detach or unmerge instead of merging",
            exclusions=len(blocked),
        )
    now = utcnow()
    session.flush()
    session.execute(
        update(PersonLink)
        .where(PersonLink.person_id == other.id)
        .values(
            person_id=survivor.id,
            source=source,
            match_probability=probability,
            linked_by=actor.username,
            linked_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    other.status = PersonStatus.MERGED
    other.merged_into = survivor.id
    other.updated_at = survivor.updated_at = now
    event = HistoryEvent(
        action=HistoryAction.MERGE,
        person_id=survivor.id,
        other_id=other.id,
        patient_ids=moved,
        cause=cause,
        candidate_id=candidate_id,
        match_probability=probability,
        actor=actor.username,
        at=now,
        reason=reason,
    )
    session.add(event)
    session.flush()
    consent_actions.do_combine_consent(
        session, actor=actor, survivor_id=survivor.id, other_id=other.id, source=channel
    )
    institutions = {m for _p, m in service.records_of(session, person_id=survivor.id)}
    _audit(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="person",
        entity_id=survivor.id,
        institutions=institutions,
        detail=f"merged {other.id} into {survivor.id} ({cause}): {len(moved)} record(s) moved"
        + (f"; {reason}" if reason else ""),
        after=service.history_to_dict(event),
        source=channel,
    )
    events.emit(
        session,
        type="identity.person.merged",
        entity_type="person",
        entity_id=survivor.id,
        payload={"merged": other.id, "patients": moved, "cause": cause, "history_id": event.id},
    )
    return event


def do_merge_persons(
    session: Session,
    *,
    actor: Principal,
    survivor_id: str,
    other_id: str,
    reason: str = "",
    source: str = "api",
) -> HistoryEvent:
    """Merge person `other_id` into `survivor_id` (a steward's decision; needs Identity.write)."""
    actor.require_scope("Identity", "write")
    if survivor_id == other_id:
        raise InvalidInput("a person cannot be merged with itself")
    survivor = _active(session, survivor_id)
    other = _active(session, other_id)
    institutions = {
        m for pid in (survivor.id, other.id) for _p, m in service.records_of(session, person_id=pid)
    }
    service.require_involved(actor, institutions, f"merging {survivor_id} and {other_id}")
    return _merge(
        session,
        actor=actor,
        survivor=survivor,
        other=other,
        cause="manual",
        source=LinkSource.MANUAL,
        reason=reason,
        channel=source,
    )


_EVENT_OF = {
    HistoryAction.UNMERGE: "unmerged",
    HistoryAction.DETACH: "detached",
    HistoryAction.RELINK: "relinked",
}


def _split(
    session: Session,
    *,
    actor: Principal,
    person: Person,
    target: Person,
    moved: list[str],
    action: HistoryAction,
    reverses: int | None,
    reason: str,
    channel: str,
    exclude: bool = True,
    cause: str = "manual",
) -> HistoryEvent:
    """Move `moved` records from `person` to `target` (and, if `exclude`, keep them apart from
    now on: a person said so; a re-evaluation does not, the records may match again)."""
    now = utcnow()
    remaining = [p for p, _m in service.records_of(session, person_id=person.id) if p not in moved]
    session.flush()
    session.execute(
        update(PersonLink)
        .where(PersonLink.patient_id.in_(moved))
        .values(
            person_id=target.id,
            source=LinkSource.UNMERGE,
            match_probability=None,
            linked_by=actor.username,
            linked_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    target.status = PersonStatus.ACTIVE
    target.merged_into = None
    target.updated_at = person.updated_at = now
    if exclude:
        _add_exclusions(session, actor, moved, remaining, action.value)
    event = HistoryEvent(
        action=action,
        person_id=person.id,
        other_id=target.id,
        patient_ids=moved,
        cause=cause,
        reverses=reverses,
        actor=actor.username,
        at=now,
        reason=reason,
    )
    session.add(event)
    session.flush()
    consent_actions.do_copy_consent(
        session, actor=actor, from_id=person.id, to_id=target.id, source=channel
    )
    institutions = {m for _p, m in service.records_of(session, person_id=person.id)} | {
        m for _p, m in service.records_of(session, person_id=target.id)
    }
    _audit(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="person",
        entity_id=person.id,
        institutions=institutions,
        detail=f"{action.value}: {len(moved)} record(s) moved from {person.id} to {target.id}"
        + (f"; {reason}" if reason else ""),
        after=service.history_to_dict(event),
        source=channel,
    )
    events.emit(
        session,
        type=f"identity.person.{_EVENT_OF[action]}",
        entity_type="person",
        entity_id=person.id,
        payload={"to": target.id, "patients": moved, "history_id": event.id},
    )
    return event


def do_unmerge(
    session: Session, *, actor: Principal, history_id: int, reason: str = "", source: str = "api"
) -> HistoryEvent:
    """Undo a merge: the records it moved go back to the person they came from.

    Records that have moved on since (detached, or unmerged already) stay where they are; the
    two groups are marked as different people, so no later run joins them again.
    """
    actor.require_scope("Identity", "write")
    merge = service.get_history_event(session, id=history_id)
    if merge.action is not HistoryAction.MERGE:
        raise InvalidInput(f"history event {history_id} is a {merge.action.value}, not a merge")
    if merge.undone_by is not None:
        raise Conflict(f"merge {history_id} was already undone by event {merge.undone_by}")
    current = service.resolve(session, person_id=merge.person_id)
    records = dict(service.records_of(session, person_id=current.id))
    moved = [p for p in merge.patient_ids if p in records]
    if not moved:
        raise Conflict(f"none of the records merge {history_id} moved are with {current.id} now")
    if len(moved) == len(records):
        raise Conflict(f"unmerging {history_id} would leave {current.id} without records")
    service.require_involved(actor, set(records.values()), f"unmerging {history_id}")
    other = service.get_person(session, id=merge.other_id)
    event = _split(
        session,
        actor=actor,
        person=current,
        target=other,
        moved=moved,
        action=HistoryAction.UNMERGE,
        reverses=merge.id,
        reason=reason,
        channel=source,
    )
    merge.undone_by = event.id
    return event


def do_detach_record(
    session: Session, *, actor: Principal, patient_id: str, reason: str = "", source: str = "api"
) -> HistoryEvent:
    """Take one record out of its person into a person of its own (a wrong link)."""
    actor.require_scope("Identity", "write")
    person_id = service.person_of(session, patient_id=patient_id)
    if person_id is None:
        raise NotFound("linked patient record", patient_id)
    person = service.get_person(session, id=person_id)
    records = dict(service.records_of(session, person_id=person.id))
    if len(records) < 2:
        raise Conflict(f"{patient_id} is the only record of {person.id}; nothing to detach from")
    service.require_involved(actor, set(records.values()), f"detaching {patient_id}")
    target = Person(id=new_person_id())
    session.add(target)
    session.flush()
    return _split(
        session,
        actor=actor,
        person=person,
        target=target,
        moved=[patient_id],
        action=HistoryAction.DETACH,
        reverses=None,
        reason=reason,
        channel=source,
    )


# -- review ---------------------------------------------------------------------------------------


def _decide(
    session: Session, *, actor: Principal, id: int, status: CandidateStatus, note: str
) -> tuple[Candidate, dict[str, Any]]:
    actor.require_scope("Identity", "write")
    row = service.get_candidate(session, id=id)
    service.require_involved(actor, {row.institution_a, row.institution_b}, f"candidate {id}")
    if row.status is not CandidateStatus.OPEN:
        raise Conflict(f"candidate {id} is {row.status.value}; only open pairs are decided")
    before = service.candidate_to_dict(row)
    row.status = status
    row.decided_by = actor.username
    row.decided_at = row.updated_at = utcnow()
    row.note = note
    return row, before


def do_accept_candidate(
    session: Session, *, actor: Principal, id: int, note: str = "", source: str = "api"
) -> tuple[Candidate, HistoryEvent | None]:
    """The pair is one person: merge their persons (the one with more records survives)."""
    row, before = _decide(session, actor=actor, id=id, status=CandidateStatus.ACCEPTED, note=note)
    pa = service.person_of(session, patient_id=row.patient_a)
    pb = service.person_of(session, patient_id=row.patient_b)
    if pa is None or pb is None:
        raise Conflict(f"candidate {id} names a record that is no longer linked; run a link run")
    event = None
    if pa != pb:
        a, b = _active(session, pa), _active(session, pb)
        size_a = len(service.records_of(session, person_id=a.id))
        size_b = len(service.records_of(session, person_id=b.id))
        survivor, other = (a, b) if (size_a, b.id) >= (size_b, a.id) else (b, a)
        event = _merge(
            session,
            actor=actor,
            survivor=survivor,
            other=other,
            cause="review",
            source=LinkSource.REVIEW,
            reason=note,
            candidate_id=row.id,
            probability=row.match_probability,
            channel=source,
        )
    _audit(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="identity_candidate",
        entity_id=str(row.id),
        institutions={row.institution_a, row.institution_b},
        detail=f"accepted: {row.patient_a} and {row.patient_b} are one person",
        before=before,
        after=service.candidate_to_dict(row),
        source=source,
    )
    events.emit(
        session,
        type="identity.candidate.accepted",
        entity_type="identity_candidate",
        entity_id=str(row.id),
        payload={"patients": [row.patient_a, row.patient_b]},
    )
    return row, event


def do_reject_candidate(
    session: Session, *, actor: Principal, id: int, note: str = "", source: str = "api"
) -> Candidate:
    """The pair are different people: never propose or link them again."""
    row, before = _decide(session, actor=actor, id=id, status=CandidateStatus.REJECTED, note=note)
    _add_exclusions(session, actor, [row.patient_a], [row.patient_b], "review")
    _audit(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="identity_candidate",
        entity_id=str(row.id),
        institutions={row.institution_a, row.institution_b},
        detail=f"rejected: {row.patient_a} and {row.patient_b} are different people",
        before=before,
        after=service.candidate_to_dict(row),
        source=source,
    )
    events.emit(
        session,
        type="identity.candidate.rejected",
        entity_type="identity_candidate",
        entity_id=str(row.id),
        payload={"patients": [row.patient_a, row.patient_b]},
    )
    return row


def do_set_person_consent(
    session: Session,
    *,
    actor: Principal,
    person_id: str,
    sharing: Sharing,
    note: str = "",
    source: str = "api",
) -> tuple[Person, PersonConsent]:
    """Record a person's consent; a member's user only for persons with a record there."""
    actor.require_scope("Consent", "write")
    person = service.resolve(session, person_id=person_id)
    institutions = {m for _p, m in service.records_of(session, person_id=person.id)}
    service.require_involved(actor, institutions, f"the consent of {person.id}")
    row = consent_actions.do_set_consent(
        session, actor=actor, person_id=person.id, sharing=sharing, note=note, source=source
    )
    return person, row


# -- the link run ---------------------------------------------------------------------------------


@dataclass
class _Plan:
    """What a run decided, before it is written: merges in order and review pairs."""

    merges: list[tuple[str, str, matching.ScoredPair]] = field(default_factory=list)
    review: list[tuple[matching.ScoredPair, str]] = field(default_factory=list)
    excluded: int = 0


class _Groups:
    """Union-find over persons, each root knowing its records (to check exclusions)."""

    def __init__(self, person_of: dict[str, str], members: dict[str, list[str]]) -> None:
        self.parent: dict[str, str] = {}
        self.person_of = person_of
        self.members = members  # root person -> its records

    def find(self, person: str) -> str:
        root = person
        while root in self.parent:
            root = self.parent[root]
        while person != root:
            nxt = self.parent[person]
            self.parent[person] = root
            person = nxt
        return root

    def union(self, survivor: str, other: str) -> None:
        self.parent[other] = survivor
        self.members[survivor] = self.members.get(survivor, []) + self.members.pop(other, [])


def _plan(
    pairs: list[matching.ScoredPair],
    *,
    thresholds: matching.Thresholds,
    institution_of: dict[str, str],
    person_of: dict[str, str],
    members: dict[str, list[str]],
    exclusions: set[tuple[str, str]],
    joined: Iterable[tuple[str, str]] = (),
) -> tuple[_Plan, _Groups]:
    """Decide, most likely pairs first, which persons to merge and which pairs to review.

    An automatic merge never gives a person two records of one member, however the chain of
    pairs runs (A1~B1 and B1~A2 link A1 and B1; A2 goes to review). `joined` are persons
    already held together (by a reviewer) before any pair is considered.
    """
    plan = _Plan()
    groups = _Groups(person_of, {k: list(v) for k, v in members.items()})
    for x, y in joined:
        rx, ry = groups.find(x), groups.find(y)
        if rx != ry:
            groups.union(rx, ry)
    excluded_by: dict[str, set[str]] = {}
    for a, b in exclusions:
        excluded_by.setdefault(a, set()).add(b)
        excluded_by.setdefault(b, set()).add(a)

    def blocked(ra: str, rb: str) -> bool:
        small, big = sorted((ra, rb), key=lambda r: len(groups.members.get(r, [])))
        for patient in groups.members.get(small, []):
            for partner in excluded_by.get(patient, ()):
                if partner in person_of and groups.find(person_of[partner]) == big:
                    return True
        return False

    for pair in pairs:
        if pair.a not in person_of or pair.b not in person_of:
            continue
        if (pair.a, pair.b) in exclusions:
            plan.excluded += 1
            continue
        ra, rb = groups.find(person_of[pair.a]), groups.find(person_of[pair.b])
        if ra == rb:
            continue
        why = None
        if pair.probability < thresholds.auto_link:
            why = "below the automatic-link threshold"
        elif institution_of[pair.a] == institution_of[pair.b]:
            why = "both records are of one member"
        else:
            why = matching.guard(pair)
        if why is None:
            shared = {institution_of[p] for p in groups.members.get(ra, [])} & {
                institution_of[p] for p in groups.members.get(rb, [])
            }
            if shared:
                why = f"the persons already hold records of one member ({min(shared)})"
        if why is None and blocked(ra, rb):
            why = "the persons hold records marked as different people"
        if why is not None:
            plan.review.append((pair, why))
            continue
        size_a, size_b = len(groups.members.get(ra, [])), len(groups.members.get(rb, []))
        survivor, other = (ra, rb) if (size_a, rb) >= (size_b, ra) else (rb, ra)
        plan.merges.append((survivor, other, pair))
        groups.union(survivor, other)
    return plan, groups


def _progress(factory: sessionmaker[Session], run_id: str, phase: str, progress: float) -> None:
    with transaction(factory) as session:
        run = session.get(LinkRun, run_id)
        if run is not None:
            run.phase = phase
            run.progress = progress


# A run still `running` after this long died with its process; a new run may start.
STALE_RUN = timedelta(hours=2)
_PHASES = {"load": 0.05, "train": 0.3, "score": 0.5, "apply": 0.8, "done": 1.0}


def do_link(
    factory: sessionmaker[Session],
    *,
    actor: Principal,
    thresholds: matching.Thresholds | None = None,
    options: matching.ModelOptions | None = None,
    channel: str = "cli",
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Match every patient record of the consortium and apply the decisions (see the module
    docstring). Re-running is safe: pairs already together, excluded or decided stay so."""
    thresholds = thresholds or matching.Thresholds()
    options = options or matching.ModelOptions()
    actor.require_scope("Identity", "write")
    if not actor.consortium_wide:
        raise PermissionDenied(
            "a link run matches every member's records; only consortium administrators and "
            "the system may start one",
            institution=actor.institution_id,
        )
    run_id = uuid.uuid4().hex
    with transaction(factory) as session:
        busy = session.scalar(
            select(LinkRun.id).where(
                LinkRun.status == RunStatus.RUNNING,
                LinkRun.started_at > utcnow() - STALE_RUN,
            )
        )
        if busy is not None:
            raise Conflict(
                f"link run {busy} is still running; follow it at /api/v1/identity/runs/{busy}",
                run_id=busy,
            )
        session.add(
            LinkRun(
                id=run_id,
                actor=actor.username,
                channel=channel,
                thresholds=thresholds.as_dict(),
                started_at=utcnow(),
            )
        )

    def step(phase: str) -> None:
        _progress(factory, run_id, phase, _PHASES[phase])
        if progress is not None:
            progress(phase, _PHASES[phase])

    timings: dict[str, float] = {}
    try:
        step("load")
        t0 = time.perf_counter()
        with factory() as session:
            facts = list(service.iter_patient_facts(session))
        rows = [features(f) for f in facts]
        timings["load"] = time.perf_counter() - t0
        result = matching.link(rows, thresholds=thresholds, options=options, progress=step)
        timings.update(result.timings)
        step("apply")
        t1 = time.perf_counter()
        with transaction(factory) as session:
            # Links made on facts a feed has changed since are re-evaluated first.
            stored = service.stored_hashes(session)
            changed = [
                r["unique_id"]
                for r in rows
                if r["unique_id"] in stored and stored[r["unique_id"]] != facts_hash(r)
            ]
            relinked = _reevaluate(
                session,
                actor=actor,
                patient_ids=changed,
                rows={r["unique_id"]: r for r in rows if r["unique_id"] in set(changed)},
                thresholds=thresholds,
                channel=channel,
            )
            summary = _apply(
                session,
                actor=actor,
                run_id=run_id,
                facts={f.patient_id: f.institution_id for f in facts},
                result=result,
                thresholds=thresholds,
                channel=channel,
            )
            _store_facts(session, rows, replace_all=True)
            timings["apply"] = time.perf_counter() - t1
            run = session.get(LinkRun, run_id)
            assert run is not None
            run.records = len(facts)
            run.pairs = len(result.pairs)
            run.auto_links = summary["auto_links"]
            run.review = summary["review"]
            run.excluded = summary["excluded"]
            run.new_persons = summary["new_persons"]
            run.persons = service.count_persons(session)
            run.model = {**result.model, "relinked": relinked["detached"]}
            run.timings = {k: round(v, 3) for k, v in timings.items()}
            run.status = RunStatus.SUCCEEDED
            run.phase = "done"
            run.progress = 1.0
            run.finished_at = utcnow()
            out = service.run_to_dict(run)
            audit.record(
                session,
                actor=actor,
                action=AuditAction.EXECUTE,
                entity_type="identity_run",
                entity_id=run_id,
                after={k: v for k, v in out.items() if k != "model"},
                detail=(
                    f"matched {len(facts)} records: {summary['auto_links']} automatic links, "
                    f"{summary['review']} pairs to review"
                ),
                source=channel,
            )
            events.emit(
                session,
                type="identity.run.finished",
                entity_type="identity_run",
                entity_id=run_id,
                payload={k: out[k] for k in ("status", "records", "auto_links", "review")},
            )
    except Exception as exc:
        with transaction(factory) as session:
            run = session.get(LinkRun, run_id)
            if run is not None:
                run.status = RunStatus.FAILED
                run.error = f"{type(exc).__name__}: {exc}"[:2000]
                run.finished_at = utcnow()
                audit.record(
                    session,
                    actor=actor,
                    action=AuditAction.EXECUTE,
                    entity_type="identity_run",
                    entity_id=run_id,
                    outcome=AuditOutcome.FAILED,
                    detail=run.error,
                    source=channel,
                )
        raise
    if progress is not None:
        progress("done", 1.0)
    return out


def _apply(
    session: Session,
    *,
    actor: Principal,
    run_id: str,
    facts: dict[str, str],
    result: matching.LinkageResult,
    thresholds: matching.Thresholds,
    channel: str,
) -> dict[str, int]:
    now = utcnow()
    # Every record the run saw belongs to a person: new ones to a person of their own.
    linked = {
        r[0]: r[1] for r in session.execute(select(PersonLink.patient_id, PersonLink.person_id))
    }
    fresh = [pid for pid in facts if pid not in linked]
    new_ids = [new_person_id() for _ in fresh]
    new_people: list[dict[str, Any]] = [
        {"id": pid, "created_at": now, "updated_at": now} for pid in new_ids
    ]
    for i in range(0, len(fresh), 1000):
        chunk = new_people[i : i + 1000]
        session.execute(insert(Person), [{**p, "status": PersonStatus.ACTIVE} for p in chunk])
        session.execute(
            insert(PersonLink),
            [
                {
                    "patient_id": pid,
                    "person_id": p["id"],
                    "institution_id": facts[pid],
                    "source": LinkSource.NEW,
                    "linked_by": actor.username,
                    "linked_at": now,
                }
                for pid, p in zip(fresh[i : i + 1000], chunk, strict=True)
            ],
        )
    linked.update(zip(fresh, new_ids, strict=True))
    members: dict[str, list[str]] = {}
    institution_of = dict(facts)
    for pid, person in linked.items():
        members.setdefault(person, []).append(pid)
    missing = [pid for pid in linked if pid not in institution_of]
    for i in range(0, len(missing), 500):
        stmt = select(PersonLink.patient_id, PersonLink.institution_id).where(
            PersonLink.patient_id.in_(missing[i : i + 500])
        )
        institution_of.update({r[0]: r[1] for r in session.execute(stmt)})
    exclusions = service.excluded_pairs(session)
    plan, groups = _plan(
        result.pairs,
        thresholds=thresholds,
        institution_of=institution_of,
        person_of=linked,
        members=members,
        exclusions=exclusions,
    )
    _write_merges(session, actor=actor, run_id=run_id, plan=plan, members=members, channel=channel)
    review = _write_candidates(
        session,
        run_id=run_id,
        plan=plan,
        groups=groups,
        person_of=linked,
        institution_of=institution_of,
    )
    return {
        "auto_links": len(plan.merges),
        "review": review,
        "excluded": plan.excluded,
        "new_persons": len(fresh),
    }


def _write_merges(
    session: Session,
    *,
    actor: Principal,
    run_id: str,
    plan: _Plan,
    members: dict[str, list[str]],
    channel: str,
) -> None:
    if not plan.merges:
        return
    now = utcnow()
    records = {k: list(v) for k, v in members.items()}
    history = []
    moves = []
    for survivor, other, pair in plan.merges:
        moved = records.pop(other, [])
        records.setdefault(survivor, []).extend(moved)
        history.append(
            {
                "action": HistoryAction.MERGE,
                "person_id": survivor,
                "other_id": other,
                "patient_ids": moved,
                "cause": "auto",
                "run_id": run_id,
                "match_probability": pair.probability,
                "actor": actor.username,
                "at": now,
                "reason": f"{pair.a} ~ {pair.b}: match probability {pair.probability:.6f}",
            }
        )
        moves.append((other, survivor, pair.probability))
    # A later merge may absorb an earlier survivor: move each person's records to the last one.
    final: dict[str, str] = {}
    for other, survivor, _p in reversed(moves):
        final[other] = final.get(survivor, survivor)
    conn = session.connection()
    conn.execute(
        update(PersonLink)
        .where(PersonLink.person_id == bindparam("old_person"))
        .values(
            person_id=bindparam("new_person"),
            source=LinkSource.AUTO,
            match_probability=bindparam("probability"),
            linked_by=actor.username,
            linked_at=now,
        ),
        [
            {"old_person": other, "new_person": final[other], "probability": p}
            for other, _s, p in moves
        ],
    )
    conn.execute(
        update(Person)
        .where(Person.id == bindparam("old_person"))
        .values(status=PersonStatus.MERGED, merged_into=bindparam("survivor"), updated_at=now),
        [{"old_person": other, "survivor": survivor} for other, survivor, _p in moves],
    )
    session.execute(insert(HistoryEvent), history)
    for item in history:
        events.emit(
            session,
            type="identity.person.merged",
            entity_type="person",
            entity_id=str(item["person_id"]),
            payload={
                "merged": item["other_id"],
                "patients": item["patient_ids"],
                "cause": "auto",
                "run_id": run_id,
            },
        )
    # The stricter consent wins: a person who denied sharing keeps denying after a merge.
    deniers = consent_service.denied(session, person_ids=[o for o, _s, _p in moves])
    for other, _survivor, _p in moves:
        if other in deniers:
            consent_actions.do_combine_consent(
                session, actor=actor, survivor_id=final[other], other_id=other, source=channel
            )


def _write_candidates(
    session: Session,
    *,
    run_id: str,
    plan: _Plan,
    groups: _Groups,
    person_of: dict[str, str],
    institution_of: dict[str, str],
) -> int:
    """Upsert the run's review pairs; open pairs it no longer proposes are superseded."""
    now = utcnow()
    existing = {(c.patient_a, c.patient_b): c for c in session.scalars(select(Candidate))}
    proposed: set[tuple[str, str]] = set()
    opened = 0
    for pair, why in plan.review:
        if groups.find(person_of[pair.a]) == groups.find(person_of[pair.b]):
            continue  # joined through other pairs in this run
        key = (pair.a, pair.b)
        proposed.add(key)
        row = existing.get(key)
        if row is None:
            row = Candidate(
                patient_a=pair.a,
                patient_b=pair.b,
                institution_a=institution_of[pair.a],
                institution_b=institution_of[pair.b],
                created_at=now,
            )
            session.add(row)
            existing[key] = row
        elif (
            row.status is not CandidateStatus.OPEN and row.status is not CandidateStatus.SUPERSEDED
        ):
            continue  # decided by a person: stays decided
        row.status = CandidateStatus.OPEN
        row.match_probability = pair.probability
        row.match_weight = pair.weight
        row.detail = pair.detail()
        row.reason = why[:200]
        row.run_id = run_id
        row.updated_at = now
        opened += 1
    for key, row in existing.items():
        if row.status is CandidateStatus.OPEN and key not in proposed:
            row.status = CandidateStatus.SUPERSEDED
            row.updated_at = now
    session.flush()
    return opened


# -- what links were made on; re-evaluation; linking on arrival -----------------------------------


def _store_facts(
    session: Session, rows: list[dict[str, Any]], *, replace_all: bool = False
) -> None:
    """Remember the features each record was last evaluated on (and its blocking keys)."""
    now = utcnow()
    if replace_all:
        session.execute(delete(RecordFacts))
    else:
        ids = [r["unique_id"] for r in rows]
        for i in range(0, len(ids), 1000):
            session.execute(
                delete(RecordFacts).where(RecordFacts.patient_id.in_(ids[i : i + 1000]))
            )
    values = [
        {
            "patient_id": r["unique_id"],
            **{c: r[c] for c in FEATURE_COLUMNS[1:]},
            "facts_hash": facts_hash(r),
            "evaluated_at": now,
        }
        for r in rows
    ]
    for i in range(0, len(values), 5000):
        session.execute(insert(RecordFacts), values[i : i + 5000])


def _open_candidate(
    session: Session,
    *,
    pair: matching.ScoredPair,
    why: str,
    institution_of: dict[str, str],
    run_id: str | None = None,
    keep_open: bool = False,
) -> bool:
    """Put a pair in the review queue (or refresh it); a decided pair stays decided. True if
    the pair was not open before (so callers count each queued pair once)."""
    now = utcnow()
    row = session.scalar(
        select(Candidate).where(Candidate.patient_a == pair.a, Candidate.patient_b == pair.b)
    )
    if row is None:
        row = Candidate(
            patient_a=pair.a,
            patient_b=pair.b,
            institution_a=institution_of[pair.a],
            institution_b=institution_of[pair.b],
            created_at=now,
        )
        session.add(row)
    elif row.status not in (CandidateStatus.OPEN, CandidateStatus.SUPERSEDED):
        return False
    fresh = row.status is not CandidateStatus.OPEN
    if keep_open and not fresh:
        return False  # already queued, with the reason it was queued for
    row.status = CandidateStatus.OPEN
    row.match_probability = pair.probability
    row.match_weight = pair.weight
    row.detail = pair.detail()
    row.reason = why[:200]
    row.run_id = run_id
    row.updated_at = now
    session.flush()
    return fresh


def _human_pairs(session: Session, patient_ids: list[str]) -> list[tuple[str, str]]:
    """Pairs among `patient_ids` that a reviewer accepted: they stay together."""
    stmt = select(Candidate.patient_a, Candidate.patient_b).where(
        Candidate.status == CandidateStatus.ACCEPTED,
        Candidate.patient_a.in_(patient_ids),
        Candidate.patient_b.in_(patient_ids),
    )
    return [(r[0], r[1]) for r in session.execute(stmt)]


def _steward_merged(session: Session, person_id: str) -> bool:
    stmt = select(HistoryEvent.id).where(
        HistoryEvent.person_id == person_id,
        HistoryEvent.action == HistoryAction.MERGE,
        HistoryEvent.cause == "manual",
        HistoryEvent.undone_by.is_(None),
    )
    return session.scalar(stmt.limit(1)) is not None


def _reevaluate(
    session: Session,
    *,
    actor: Principal,
    patient_ids: list[str],
    rows: dict[str, dict[str, Any]],
    thresholds: matching.Thresholds,
    channel: str,
) -> dict[str, Any]:
    """Check again, on their current facts, the persons of records that changed.

    The records of each such person are scored pairwise and regrouped by the rules of an
    automatic link (reviewer-accepted pairs stay joined); the group with most records keeps
    the person, every other group gets a person of its own (history `relink`, audited, no
    exclusion: the records may match again), and its best pair with the kept records goes to
    review when it is still doubtful. A person a steward merged by hand is not split: its
    changed pairs go to review.
    """
    persons = service.persons_of(session, patient_ids=patient_ids)
    records = service.records_of_persons(session, person_ids=set(persons.values()))
    need = [p for recs in records.values() for p, _m in recs if p not in rows]
    rows = {
        **rows,
        **{f.patient_id: features(f) for f in service.patient_facts(session, patient_ids=need)},
    }
    changed = set(patient_ids)
    detached: list[dict[str, Any]] = []
    review = 0
    for person_id, recs in sorted(records.items()):
        if len(recs) < 2:
            continue
        institution_of = dict(recs)
        ids = [p for p, _m in recs if p in rows]
        pairs = [matching.score(rows[a], rows[b]) for i, a in enumerate(ids) for b in ids[i + 1 :]]
        pairs = [p for p in pairs if p.probability >= thresholds.review]
        pairs.sort(key=lambda p: (-p.probability, p.a, p.b))
        if _steward_merged(session, person_id):
            for pair in pairs:
                if (pair.a in changed or pair.b in changed) and (
                    pair.probability < thresholds.auto_link or matching.guard(pair)
                ):
                    review += _open_candidate(
                        session,
                        pair=pair,
                        why="a steward merged these; a record changed since and no longer "
                        "clearly matches",
                        institution_of=institution_of,
                    )
            continue
        _unused, groups = _plan(
            pairs,
            thresholds=thresholds,
            institution_of=institution_of,
            person_of={p: p for p in ids},
            members={p: [p] for p in ids},
            exclusions=set(),
            joined=_human_pairs(session, ids),
        )
        roots: dict[str, list[str]] = {}
        for p in ids:
            roots.setdefault(groups.find(p), []).append(p)
        if len(roots) == 1:
            continue
        # The group with most records keeps the person; then the one with fewest changes.
        ordered = sorted(
            roots.values(),
            key=lambda g: (-len(g), sum(p in changed for p in g), min(g)),
        )
        keep, rest = ordered[0], ordered[1:]
        person = service.get_person(session, id=person_id)
        for group in rest:
            target = Person(id=new_person_id())
            session.add(target)
            session.flush()
            reason = (
                "re-evaluated after a change of "
                + ", ".join(sorted(changed & set(ids)))
                + ": no longer matches "
                + ", ".join(keep)
            )
            _split(
                session,
                actor=actor,
                person=person,
                target=target,
                moved=sorted(group),
                action=HistoryAction.RELINK,
                reverses=None,
                reason=reason,
                channel=channel,
                exclude=False,
                cause="relink",
            )
            detached.append({"from": person_id, "to": target.id, "patients": sorted(group)})
            doubtful = [
                p
                for p in pairs
                if (p.a in group) != (p.b in group) and (p.a in keep or p.b in keep)
            ]
            if doubtful:
                best = doubtful[0]
                why = matching.guard(best) or "below the automatic-link threshold"
                review += _open_candidate(
                    session,
                    pair=best,
                    why=f"was linked; a record changed and {why}",
                    institution_of=institution_of,
                )
    return {"changed": len(changed), "detached": detached, "review": review}


def _session_scope(target: Session | sessionmaker[Session]) -> Any:
    if isinstance(target, Session):
        from contextlib import nullcontext

        return nullcontext(target)
    return transaction(target)


def _require_consortium(actor: Principal, what: str) -> None:
    actor.require_scope("Identity", "write")
    if not actor.consortium_wide:
        raise PermissionDenied(
            f"{what} compares with every member's records; only consortium-wide accounts and "
            "the system may do it",
            institution=actor.institution_id,
        )


def _on_change(
    session: Session,
    *,
    actor: Principal,
    facts: list[Any],
    thresholds: matching.Thresholds,
    channel: str,
) -> dict[str, Any]:
    """Records as they are now: re-evaluate the persons of linked records whose features
    changed, then match the changed and the new ones; unchanged linked records cost one hash
    compare and nothing else."""
    rows = {f.patient_id: features(f) for f in facts}
    linked = service.persons_of(session, patient_ids=rows)
    stored = service.stored_hashes(session, patient_ids=linked)
    changed = sorted(p for p in linked if stored.get(p) != facts_hash(rows[p]))
    new = sorted(p for p in rows if p not in linked)
    result = _reevaluate(
        session,
        actor=actor,
        patient_ids=changed,
        rows={p: rows[p] for p in changed},
        thresholds=thresholds,
        channel=channel,
    )
    matched = _link_rows(
        session,
        actor=actor,
        rows=[rows[p] for p in changed + new],
        thresholds=thresholds,
        channel=channel,
    )
    out = {
        "records": len(rows),
        "changed": len(changed),
        "new_persons": matched["new_persons"],
        "detached": result["detached"],
        "linked": matched["linked"],
        "review": result["review"] + matched["review"],
    }
    if changed or new:
        audit.record(
            session,
            actor=actor,
            action=AuditAction.EXECUTE,
            entity_type="identity_link",
            entity_id=None,
            after={k: out[k] for k in ("changed", "detached", "linked", "review")},
            detail=(
                f"{len(new)} new and {len(changed)} changed record(s): "
                f"{len(out['detached'])} taken out of their person, {len(out['linked'])} "
                f"link(s), {out['review']} pair(s) to review"
            ),
            source=channel,
        )
    return out


def do_link_records(
    target: Session | sessionmaker[Session],
    *,
    actor: Principal,
    record_ids: Iterable[str],
    thresholds: matching.Thresholds | None = None,
    channel: str = "ingest",
) -> dict[str, Any]:
    """Match new or changed records on arrival (no full run): the call after an ingest run,
    with the ids of the patient records it stored or updated.

    A changed record's person is re-evaluated first (`_reevaluate`). Candidates come from
    indexed blocking keys (`service.blocking_candidates`, the keys of a full run), pairs are
    scored by the prior model in Python (`matching.score`) and decided by the rules of a run
    (`_plan`: automatic links with the guard, one member never twice in a person, exclusions
    kept, the rest to review). Each merge is one audited history row. Takes a session (the
    caller's transaction) or a factory (a transaction of its own). Idempotent.
    """
    _require_consortium(actor, "linking on arrival")
    thresholds = thresholds or matching.Thresholds()
    with _session_scope(target) as session:
        facts = service.patient_facts(session, patient_ids=record_ids)
        return _on_change(session, actor=actor, facts=facts, thresholds=thresholds, channel=channel)


def do_relink_changed(
    target: Session | sessionmaker[Session],
    *,
    actor: Principal,
    patient_ids: Iterable[str] | None = None,
    thresholds: matching.Thresholds | None = None,
    channel: str = "ingest",
) -> dict[str, Any]:
    """Re-evaluate the links of records whose demographics or identifiers changed since the
    index last looked (ADT^A08/A31, a FHIR update, a CSV row sent again with other values),
    and match them again: `do_link_records` over `patient_ids`, or (None) over every linked
    record, for a scheduled sweep."""
    _require_consortium(actor, "re-evaluating links")
    thresholds = thresholds or matching.Thresholds()
    with _session_scope(target) as session:
        if patient_ids is None:
            ids: list[str] = [r[0] for r in session.execute(select(PersonLink.patient_id))]
        else:
            ids = list(service.persons_of(session, patient_ids=patient_ids))
        facts = service.patient_facts(session, patient_ids=ids)
        out = _on_change(session, actor=actor, facts=facts, thresholds=thresholds, channel=channel)
        return {k: out[k] for k in ("changed", "detached", "linked", "review")}


def _link_rows(
    session: Session,
    *,
    actor: Principal,
    rows: list[dict[str, Any]],
    thresholds: matching.Thresholds,
    channel: str,
) -> dict[str, Any]:
    now = utcnow()
    persons = service.persons_of(session, patient_ids=[r["unique_id"] for r in rows])
    new_persons = 0
    for r in rows:
        if r["unique_id"] not in persons:
            pid = new_person_id()
            session.add(Person(id=pid, created_at=now, updated_at=now))
            session.flush()
            session.add(
                PersonLink(
                    patient_id=r["unique_id"],
                    person_id=pid,
                    institution_id=r["institution_id"],
                    source=LinkSource.NEW,
                    linked_by=actor.username,
                    linked_at=now,
                )
            )
            persons[r["unique_id"]] = pid
            new_persons += 1
    session.flush()
    _store_facts(session, rows)
    pairs: dict[tuple[str, str], matching.ScoredPair] = {}
    for r in rows:
        for other in service.blocking_candidates(session, r):
            pair = matching.score(r, other)
            if pair.probability >= thresholds.review:
                pairs[(pair.a, pair.b)] = pair
    linked: list[dict[str, Any]] = []
    review = 0
    if pairs:
        involved = {p for key in pairs for p in key}
        person_of = service.persons_of(session, patient_ids=involved)
        members = {
            k: [p for p, _m in v]
            for k, v in service.records_of_persons(
                session, person_ids=set(person_of.values())
            ).items()
        }
        institution_of = {
            p: m
            for v in service.records_of_persons(
                session, person_ids=set(person_of.values())
            ).values()
            for p, m in v
        }
        every = [p for recs in members.values() for p in recs]
        exclusions = {
            (e.patient_a, e.patient_b) for e in _exclusions_between(session, every, every)
        }
        ordered = sorted(pairs.values(), key=lambda p: (-p.probability, p.a, p.b))
        plan, groups = _plan(
            ordered,
            thresholds=thresholds,
            institution_of=institution_of,
            person_of=person_of,
            members=members,
            exclusions=exclusions,
        )
        for survivor_id, other_id, pair in plan.merges:
            _merge(
                session,
                actor=actor,
                survivor=service.get_person(session, id=survivor_id),
                other=service.get_person(session, id=other_id),
                cause="auto",
                source=LinkSource.AUTO,
                reason=f"{pair.a} ~ {pair.b}: match probability {pair.probability:.6f} "
                "(on arrival)",
                probability=pair.probability,
                channel=channel,
            )
            linked.append(
                {
                    "patients": [pair.a, pair.b],
                    "person_id": survivor_id,
                    "probability": pair.probability,
                }
            )
        for pair, why in plan.review:
            if groups.find(person_of[pair.a]) == groups.find(person_of[pair.b]):
                continue
            review += _open_candidate(
                session, pair=pair, why=why, institution_of=institution_of, keep_open=True
            )
    return {
        "records": len(rows),
        "new_persons": new_persons,
        "linked": linked,
        "review": review,
    }


__all__ = [
    "do_accept_candidate",
    "do_detach_record",
    "do_link",
    "do_link_records",
    "do_merge_persons",
    "do_reject_candidate",
    "do_relink_changed",
    "do_set_person_consent",
    "do_unmerge",
]
