"""Writes to terminology: map entries (versioned, audited), the unmapped queue, re-apply.

Every `do_*` works inside the caller's transaction: it checks scope and member, writes, records
one audit row and queues an outbox event. `note_unmapped` is the ingest hot path: an upsert per
distinct term and batch, no audit (the ingest run is audited).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from carepool.catalog import service as catalog_service
from carepool.catalog.codes import DEPARTMENT_CODES
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound
from carepool.core.time import utcnow
from carepool.records import actions as records_actions
from carepool.records import service as records_service
from carepool.records.models import Encounter
from carepool.records.schemas import Coding, ObservationStandard
from carepool.terminology import service as terminology_service
from carepool.terminology.models import MapKind, TermMap, TermMapping, TermStatus, UnmappedTerm
from carepool.terminology.resolver import GLOBAL, Terminology
from carepool.terminology.resolver import UnmappedTerm as Unmapped
from carepool.terminology.seed import is_loinc_code
from carepool.terminology.units import is_ucum


def _authorize(session: Session, actor: Principal, scope: str) -> None:
    actor.require_scope("Terminology", "write")
    if scope == GLOBAL:
        actor.require_institution(None, "the consortium-wide maps")
    else:
        catalog_service.get(session, kind="institution", id=scope)
        actor.require_institution(scope, f"the maps of {scope}")


def _check_target(kind: MapKind, target: str | None) -> None:
    if target is None:
        return
    problem = ""
    if kind is MapKind.CODE and not is_loinc_code(target):
        problem = f"{target!r} is not a LOINC code (digits, a dash and a valid check digit)"
    elif kind is MapKind.UNIT and not is_ucum(target):
        problem = f"{target!r} is not a UCUM unit"
    elif kind is MapKind.DEPARTMENT and target not in DEPARTMENT_CODES:
        problem = f"{target!r} is not a standard department code"
    if problem:
        raise InvalidInput(problem, [FieldError("target", problem)])


def _bump(session: Session, kind: MapKind, scope: str, actor: Principal) -> TermMap:
    """The map, one version newer (created at version 1). Row-locked on PostgreSQL."""
    stmt = select(TermMap).where(TermMap.kind == kind, TermMap.scope == scope)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    term_map = session.scalar(stmt)
    if term_map is None:
        term_map = TermMap(kind=kind, scope=scope, version=0)
        session.add(term_map)
    term_map.version += 1
    term_map.updated_at = utcnow()
    term_map.updated_by = actor.username
    session.flush()
    return term_map


def do_set_mapping(
    session: Session,
    *,
    actor: Principal,
    kind: MapKind,
    term: str,
    target: str | None,
    scope: str = GLOBAL,
    source_system: str = "",
    match: str | None = None,
    note: str = "",
    channel: str = "api",
) -> TermMapping:
    """Map a local code, name or unit (`term`) to `target` (None: explicitly not mapped).

    Codes match on (`source_system`, `term`); names and units on the folded `term`. The map's
    version goes up by one; the previous entry for the same key stays in the history.
    """
    _authorize(session, actor, scope)
    match = match or ("code" if kind is MapKind.CODE and source_system else "name")
    if match not in ("code", "name") or (match == "code" and kind is not MapKind.CODE):
        raise InvalidInput(f"match {match!r} is not possible for a {kind.value} map")
    key = terminology_service.map_key(kind, match, term)
    if not key:
        raise InvalidInput("the term is empty", [FieldError("term", "must not be empty")])
    _check_target(kind, target)
    term_map = _bump(session, kind, scope, actor)
    current = session.scalar(
        select(TermMapping).where(
            TermMapping.map_id == term_map.id,
            TermMapping.match == match,
            TermMapping.source_system == source_system,
            TermMapping.source == key,
            TermMapping.valid_to.is_(None),
        )
    )
    before = terminology_service.entry_to_dict(current) if current else None
    if current is not None:
        current.valid_to = term_map.version
    row = TermMapping(
        map_id=term_map.id,
        match=match,
        source_system=source_system,
        source=key,
        source_display=term.strip()[:300],
        target=target,
        note=note[:300],
        valid_from=term_map.version,
        created_by=actor.username,
    )
    session.add(row)
    session.flush()
    if target is not None:
        _mark_mapped(session, kind, scope, source_system, match, key)
    after = terminology_service.entry_to_dict(row)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE if before else AuditAction.CREATE,
        entity_type="term_mapping",
        entity_id=f"{kind.value}:{scope}:{source_system}|{key}",
        entity_institution=None if scope == GLOBAL else scope,
        before=before,
        after=after,
        source=channel,
        detail=f"{kind.value} map {scope} version {term_map.version}",
    )
    events.emit(
        session,
        type="terminology.map.changed",
        entity_type="term_map",
        entity_id=f"{kind.value}:{scope}",
        institution_id=None if scope == GLOBAL else scope,
        payload={"version": term_map.version, "source": key, "target": target},
    )
    return row


def do_retire_mapping(
    session: Session,
    *,
    actor: Principal,
    kind: MapKind,
    term: str,
    scope: str = GLOBAL,
    source_system: str = "",
    match: str | None = None,
    channel: str = "api",
) -> TermMap:
    """Remove an entry from a stored map (the seed's entry, if any, applies again); new version."""
    _authorize(session, actor, scope)
    match = match or ("code" if kind is MapKind.CODE and source_system else "name")
    key = terminology_service.map_key(kind, match, term)
    existing = terminology_service.get_map(session, kind=kind, scope=scope)
    current = (
        session.scalar(
            select(TermMapping).where(
                TermMapping.map_id == existing.id,
                TermMapping.match == match,
                TermMapping.source_system == source_system,
                TermMapping.source == key,
                TermMapping.valid_to.is_(None),
            )
        )
        if existing
        else None
    )
    if current is None:
        raise NotFound("mapping", f"{kind.value}:{scope}:{source_system}|{key}")
    term_map = _bump(session, kind, scope, actor)
    before = terminology_service.entry_to_dict(current)
    current.valid_to = term_map.version
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DELETE,
        entity_type="term_mapping",
        entity_id=f"{kind.value}:{scope}:{source_system}|{key}",
        entity_institution=None if scope == GLOBAL else scope,
        before=before,
        source=channel,
        detail=f"{kind.value} map {scope} version {term_map.version}",
    )
    events.emit(
        session,
        type="terminology.map.changed",
        entity_type="term_map",
        entity_id=f"{kind.value}:{scope}",
        institution_id=None if scope == GLOBAL else scope,
        payload={"version": term_map.version, "source": key, "target": None},
    )
    return term_map


def _mark_mapped(
    session: Session, kind: MapKind, scope: str, system: str, match: str, key: str
) -> None:
    stmt = update(UnmappedTerm).where(
        UnmappedTerm.kind == kind,
        UnmappedTerm.match == match,
        UnmappedTerm.term == key,
        UnmappedTerm.status == TermStatus.OPEN,
    )
    if match == "code":
        stmt = stmt.where(UnmappedTerm.source_system == system)
    if scope != GLOBAL:
        stmt = stmt.where(UnmappedTerm.institution_id == scope)
    session.execute(stmt.values(status=TermStatus.MAPPED))


def do_set_term_status(
    session: Session, *, actor: Principal, id: int, status: TermStatus, channel: str = "api"
) -> UnmappedTerm:
    """Ignore a queued term (or reopen it)."""
    row = terminology_service.get_unmapped_term(session, id=id)
    actor.require_scope("Terminology", "write")
    actor.require_institution(row.institution_id, f"unmapped term {id}")
    before = {"status": row.status.value}
    row.status = status
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type="unmapped_term",
        entity_id=str(id),
        entity_institution=row.institution_id,
        before=before,
        after={"status": status.value},
        source=channel,
    )
    return row


def note_unmapped(
    session: Session, *, institution_id: str, terms: Iterable[Unmapped], seen_at: datetime
) -> int:
    """Count unmapped terms into the queue (an upsert per distinct term); returns how many."""
    counted: dict[tuple[str, str, str, str], tuple[str, int]] = {}
    for t in terms:
        key = (t.kind, t.system[:200], t.match, t.term[:200])
        display, n = counted.get(key, (t.display, 0))
        counted[key] = (display, n + 1)
    if not counted:
        return 0
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for (kind, system, match, term), (display, n) in sorted(counted.items()):
        stmt = insert(UnmappedTerm).values(
            kind=MapKind(kind).value,
            institution_id=institution_id,
            source_system=system,
            match=match,
            term=term,
            display=(display or term)[:300],
            count=n,
            first_seen=seen_at,
            last_seen=seen_at,
            status=TermStatus.OPEN.value,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "institution_id", "source_system", "match", "term"],
            set_={"count": UnmappedTerm.count + n, "last_seen": seen_at},
        )
        session.execute(stmt)
    return len(counted)


def standardise_stored(terminology: Terminology, obs: Any) -> ObservationStandard:
    """The standard form of a stored observation, recomputed from what the member sent."""
    std = terminology.standardise(
        obs.institution_id,
        [Coding(*c) for c in obs.codings or []]
        or [Coding(obs.original_system, obs.original_code, obs.original_text)],
        text=obs.original_text,
        value=obs.original_number,
        unit=obs.original_unit or None,
        ref_low=obs.original_ref_low,
        ref_high=obs.original_ref_high,
    )
    flags = list(std.flags)
    # Flags that terminology does not own (set by connectors) survive a re-apply.
    flags += [f for f in obs.flags or [] if f not in _TERMINOLOGY_FLAGS and f not in flags]
    return ObservationStandard(
        loinc=std.loinc,
        display=std.display,
        original=std.original,
        value=std.value,
        unit=std.unit,
        ref_low=std.ref_low,
        ref_high=std.ref_high,
        flags=flags,
        note=std.note,
    )


_TERMINOLOGY_FLAGS = {"unmapped-code", "unmapped-unit", "implausible", "unknown-loinc"}


def do_reapply_maps(
    session: Session,
    *,
    actor: Principal,
    institution_id: str | None = None,
    channel: str = "api",
) -> dict[str, int]:
    """Recompute the standard form of stored observations and encounters with today's maps.

    Works from the originals kept on every record, so it can be run any number of times; only
    records whose standard form changes are written.
    """
    actor.require_scope("Terminology", "write")
    actor.require_institution(institution_id, "the records of the whole consortium")
    terminology = terminology_service.snapshot(session)
    examined = changed = 0
    for obs in records_service.iter_observations(session, institution_id=institution_id):
        examined += 1
        if records_actions.apply_observation_standard(obs, standardise_stored(terminology, obs)):
            changed += 1
        if examined % 1000 == 0:
            session.flush()
    stmt = select(Encounter)
    if institution_id is not None:
        stmt = stmt.where(Encounter.institution_id == institution_id)
    departments = 0
    for enc in session.scalars(stmt):
        code = terminology.resolve_department(enc.institution_id, enc.department_text)
        if code != enc.department_code and enc.department_text:
            enc.department_code = code
            departments += 1
    session.flush()
    result = {
        "observations_examined": examined,
        "observations_changed": changed,
        "encounters_changed": departments,
    }
    audit.record(
        session,
        actor=actor,
        action=AuditAction.EXECUTE,
        entity_type="terminology_reapply",
        entity_id=institution_id or GLOBAL,
        entity_institution=institution_id,
        after={**result, "versions": terminology.versions()},
        source=channel,
    )
    events.emit(
        session,
        type="terminology.reapplied",
        entity_type="terminology_reapply",
        entity_id=institution_id or GLOBAL,
        institution_id=institution_id,
        payload=result,
    )
    return result
