"""Writes of consent: record a person's decision, and carry it through merges and unmerges.

Every change writes an audit row (before/after) and an outbox event in the caller's transaction.
Who may record a person's consent (a member that holds one of their records) is decided by the
caller, which knows the person's records (identity).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.time import utcnow
from carepool.records.consent import service
from carepool.records.consent.models import PersonConsent, Sharing


def do_set_consent(
    session: Session,
    *,
    actor: Principal,
    person_id: str,
    sharing: Sharing,
    note: str = "",
    source: str = "api",
) -> PersonConsent:
    """Record that the person allows or denies sharing across members (needs Consent.write)."""
    actor.require_scope("Consent", "write")
    return _set(
        session, actor=actor, person_id=person_id, sharing=sharing, note=note, source=source
    )


def _set(
    session: Session,
    *,
    actor: Principal,
    person_id: str,
    sharing: Sharing,
    note: str,
    source: str,
) -> PersonConsent:
    row = session.get(PersonConsent, person_id)
    before = service.to_dict(person_id, row)
    if row is None:
        row = PersonConsent(person_id=person_id)
        session.add(row)
    row.sharing = sharing
    row.institution_id = actor.institution_id
    row.recorded_by = actor.username
    row.recorded_at = utcnow()
    row.note = note
    session.flush()
    after = service.to_dict(person_id, row)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE if before["default"] is False else AuditAction.CREATE,
        entity_type="consent",
        entity_id=person_id,
        entity_institution=actor.institution_id,
        before=before,
        after=after,
        detail=f"sharing across members: {sharing.value}" + (f" ({note})" if note else ""),
        source=source,
    )
    events.emit(
        session,
        type="consent.changed",
        entity_type="person",
        entity_id=person_id,
        institution_id=actor.institution_id,
        payload={"sharing": sharing.value},
    )
    return row


def do_combine_consent(
    session: Session, *, actor: Principal, survivor_id: str, other_id: str, source: str = "api"
) -> None:
    """After a merge: the survivor denies sharing if either person did (the stricter wins)."""
    theirs = service.get(session, person_id=other_id)
    if theirs is None or theirs.sharing is not Sharing.DENY:
        return
    if service.sharing_of(session, person_id=survivor_id) is Sharing.DENY:
        return
    _set(
        session,
        actor=actor,
        person_id=survivor_id,
        sharing=Sharing.DENY,
        note=f"merged with {other_id}, which denied sharing",
        source=source,
    )


def do_copy_consent(
    session: Session, *, actor: Principal, from_id: str, to_id: str, source: str = "api"
) -> None:
    """After an unmerge or detach: the split-off person keeps the decision they had together."""
    theirs = service.get(session, person_id=from_id)
    if theirs is None:
        return
    _set(
        session,
        actor=actor,
        person_id=to_id,
        sharing=theirs.sharing,
        note=f"split from {from_id}",
        source=source,
    )
