"""Writes to the catalogue: every change goes through here, checked, audited and evented.

Each `do_*` works inside the caller's transaction (the caller commits): it checks the caller's
scope and institution, checks references with errors that name the field, writes, records an
audit row with before/after, and queues an outbox event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepool.catalog import service as catalog_service
from carepool.catalog.models import (
    Resource,
    ResourceKind,
    ServiceOffering,
    ServiceRequirement,
)
from carepool.catalog.schemas import CatalogDocument
from carepool.core import audit, events
from carepool.core.audit import AuditAction
from carepool.core.auth import Principal
from carepool.core.errors import AlreadyExists, FieldError, InvalidInput
from carepool.core.limits import too_long

# Kinds whose parent must belong to the same member as the child.
_SAME_MEMBER_REFS = {"campus_id", "department_id", "ward_id", "room_id"}


def _fields(data: BaseModel, *, partial: bool) -> dict[str, Any]:
    return data.model_dump(exclude_unset=partial)


Lookup = Callable[[str, str], Any]


def _session_lookup(session: Session) -> Lookup:
    return lambda kind, key: session.get(catalog_service.entity(kind).model, key)


def _check_refs(
    session: Session,
    kind: str,
    values: dict[str, Any],
    where: str,
    lookup: Lookup | None = None,
) -> list[FieldError]:
    """Every reference names an existing row of the right member and kind."""
    errors: list[FieldError] = []
    ek = catalog_service.entity(kind)
    find = lookup or _session_lookup(session)
    for field_name, target in ek.refs:
        ref = values.get(field_name)
        if ref is None:
            continue
        row = find(target, ref)
        if row is None:
            errors.append(
                FieldError(
                    f"{where}.{field_name}", f"{target.replace('_', ' ')} {ref!r} does not exist"
                )
            )
            continue
        member = values.get("institution_id")
        parent_member = getattr(row, "institution_id", member)
        if field_name in _SAME_MEMBER_REFS and member and parent_member != member:
            errors.append(
                FieldError(
                    f"{where}.{field_name}",
                    f"{target} {ref!r} belongs to {parent_member!r}, not {member!r}",
                )
            )
        if (
            field_name == "room_id"
            and isinstance(row, Resource)
            and row.kind is not ResourceKind.ROOM
        ):
            errors.append(
                FieldError(f"{where}.room_id", f"{ref!r} is a {row.kind.value}, not a room")
            )
    codes = list(values.get("specialties") or [])
    codes += [r.get("specialty") for r in values.get("requirements") or [] if r.get("specialty")]
    for code in codes:
        if find("department_code", code) is None:
            errors.append(
                FieldError(
                    f"{where}.specialties", f"department code {code!r} is not in the code list"
                )
            )
    for i, member_id in enumerate(values.get("offered_by") or []):
        if find("institution", member_id) is None:
            errors.append(
                FieldError(f"{where}.offered_by[{i}]", f"institution {member_id!r} does not exist")
            )
    return errors


def _write(session: Session, kind: str, obj: Any, values: dict[str, Any]) -> None:
    if errors := too_long(type(obj), values):
        raise InvalidInput(f"the {kind.replace('_', ' ')} has text longer than allowed", errors)
    if kind == "service":
        requirements = values.pop("requirements", None)
        offered_by = values.pop("offered_by", None)
        for k, v in values.items():
            setattr(obj, k, v)
        if requirements is not None:
            obj.requirements = [
                ServiceRequirement(position=i, **r) for i, r in enumerate(requirements)
            ]
        if offered_by is not None:
            obj.offerings = [ServiceOffering(institution_id=m) for m in sorted(set(offered_by))]
        return
    for k, v in values.items():
        setattr(obj, k, v)


def _authorize(session: Session, actor: Principal, kind: str, owner: str | None, what: str) -> None:
    actor.require_scope("Catalog", "write")
    actor.require_institution(owner, what)


def do_create_entry(
    session: Session,
    *,
    actor: Principal,
    kind: str,
    data: BaseModel,
    source: str = "api",
) -> Any:
    """Create one catalogue entry of `kind` from its validated shape."""
    ek = catalog_service.entity(kind)
    values = _fields(data, partial=False)
    key = values[ek.key]
    where = f"{kind}({key})"
    model: Any = ek.model
    probe = model(**{k: v for k, v in values.items() if k not in ("requirements", "offered_by")})
    owner = ek.owner(session, probe)
    _authorize(session, actor, kind, owner, f"{kind} {key!r}")
    if session.get(model, key) is not None:
        raise AlreadyExists(kind.replace("_", " "), key)
    errors = _check_refs(session, kind, values, where)
    if errors:
        raise InvalidInput(f"{kind} {key!r} refers to entries that do not fit", errors)
    obj = model()
    _write(session, kind, obj, dict(values))
    session.add(obj)
    session.flush()
    after = catalog_service.to_dict(kind, obj)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.CREATE,
        entity_type=kind,
        entity_id=key,
        entity_institution=owner,
        after=after,
        source=source,
    )
    events.emit(
        session,
        type=f"catalog.{kind}.created",
        entity_type=kind,
        entity_id=key,
        institution_id=owner,
    )
    return obj


def do_update_entry(
    session: Session, *, actor: Principal, kind: str, id: str, patch: BaseModel, source: str = "api"
) -> Any:
    """Change the fields set in `patch` on one entry; validates the result as a whole."""
    ek = catalog_service.entity(kind)
    obj = catalog_service.get(session, kind=kind, id=id)
    owner = ek.owner(session, obj)
    _authorize(session, actor, kind, owner, f"{kind} {id!r}")
    before = catalog_service.to_dict(kind, obj)
    changes = _fields(patch, partial=True)
    merged = {**before, **{k: v for k, v in changes.items()}}
    try:
        ek.shape.model_validate(merged)
    except ValidationError as exc:
        raise InvalidInput(
            f"{kind} {id!r} would become invalid", _pydantic_errors(exc, f"{kind}({id})")
        ) from exc
    errors = _check_refs(session, kind, {**merged, **changes}, f"{kind}({id})")
    if errors:
        raise InvalidInput(f"{kind} {id!r} refers to entries that do not fit", errors)
    _write(session, kind, obj, dict(changes))
    session.flush()
    after = catalog_service.to_dict(kind, obj)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.UPDATE,
        entity_type=kind,
        entity_id=id,
        entity_institution=owner,
        before=before,
        after=after,
        source=source,
    )
    events.emit(
        session,
        type=f"catalog.{kind}.updated",
        entity_type=kind,
        entity_id=id,
        institution_id=owner,
    )
    return obj


def do_delete_entry(
    session: Session, *, actor: Principal, kind: str, id: str, source: str = "api"
) -> None:
    """Delete a calendar rule or exception (other entries are closed through their status)."""
    if kind not in ("calendar_rule", "calendar_exception"):
        raise InvalidInput(f"{kind} entries are not deleted; set their status instead")
    ek = catalog_service.entity(kind)
    obj = catalog_service.get(session, kind=kind, id=id)
    owner = ek.owner(session, obj)
    _authorize(session, actor, kind, owner, f"{kind} {id!r}")
    before = catalog_service.to_dict(kind, obj)
    session.delete(obj)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DELETE,
        entity_type=kind,
        entity_id=id,
        entity_institution=owner,
        before=before,
        source=source,
    )
    events.emit(
        session,
        type=f"catalog.{kind}.deleted",
        entity_type=kind,
        entity_id=id,
        institution_id=owner,
    )


def _pydantic_errors(
    exc: ValidationError, prefix: str, doc: dict[str, Any] | None = None
) -> list[FieldError]:
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        path = prefix
        node: Any = doc
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
                if isinstance(node, list) and part < len(node):
                    node = node[part]
                    ident = node.get("id") or node.get("code") if isinstance(node, dict) else None
                    if ident:
                        path += f" (id={ident})"
                else:
                    node = None
            else:
                path += f".{part}" if path else str(part)
                node = node.get(part) if isinstance(node, dict) else None
        out.append(FieldError(path, err["msg"]))
    return out


# Sections whose entries refer to entries of the same section.
_SELF_REFS = {"institution": "parent_id", "resource": "room_id"}


def _parents_first(
    kind: str, entries: list[BaseModel]
) -> tuple[list[tuple[int, BaseModel]], list[FieldError]]:
    """Entries in an order where a referenced entry (parent, room) comes before its referrers."""
    indexed = list(enumerate(entries))
    field_name = _SELF_REFS.get(kind)
    if field_name is None:
        return indexed, []
    pending = {str(e.model_dump(include={"id"})["id"]): (i, e) for i, e in indexed}
    out: list[tuple[int, BaseModel]] = []
    while pending:
        ready = [
            key
            for key, (_i, e) in pending.items()
            if getattr(e, field_name) is None or getattr(e, field_name) not in pending
        ]
        if not ready:
            section = catalog_service.entity(kind).section
            return out, [
                FieldError(
                    f"{section}[{i}] (id={key}).{field_name}", "is part of a reference cycle"
                )
                for key, (i, _e) in sorted(pending.items())
            ]
        for key in sorted(ready, key=lambda k: pending[k][0]):
            out.append(pending.pop(key))
    return out, []


@dataclass
class ImportSummary:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    digest: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "sha256": self.digest,
        }


def parse_document(raw: dict[str, Any]) -> CatalogDocument:
    """Validate a catalogue document's shape; errors name the section, entry and field."""
    if not isinstance(raw, dict):
        raise InvalidInput(
            "a catalogue document is a mapping with sections",
            [FieldError("(document)", "not a mapping")],
        )
    try:
        return CatalogDocument.model_validate(raw)
    except ValidationError as exc:
        errors = _pydantic_errors(exc, "", raw)
        raise InvalidInput(
            f"the catalogue document has {len(errors)} error(s); nothing was imported", errors
        ) from exc


def do_import_catalog(
    session: Session,
    *,
    actor: Principal,
    raw: dict[str, Any],
    source: str = "api",
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Create or update every entry of a catalogue document, all or nothing.

    The caller's transaction must be rolled back when this raises: nothing is half-applied.
    Unchanged entries are left alone (no audit row); changed ones are audited one by one.
    `on_progress(done, total)` is called as entries are checked and applied.
    """
    actor.require_scope("Catalog", "write")
    doc = parse_document(raw)
    summary = ImportSummary(
        digest=hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    )
    errors: list[FieldError] = []
    failed: set[tuple[str, str]] = set()
    sections: list[tuple[str, list[BaseModel]]] = [("consortium", [doc.consortium])]
    for name, ek in catalog_service.ENTITIES.items():
        if name != "consortium":
            sections.append((name, getattr(doc, ek.section)))
    # Every existing row, loaded once and held: lookups and reference checks stay in memory.
    known: dict[str, dict[str, Any]] = {}
    for name, ek in catalog_service.ENTITIES.items():
        model_: Any = ek.model
        known[name] = {getattr(o, ek.key): o for o in session.scalars(select(model_))}

    def lookup(kind: str, key: str) -> Any:
        return known[kind].get(key)

    total = sum(len(entries) for _kind, entries in sections)
    done = 0

    for kind, entries in sections:
        ek = catalog_service.entity(kind)
        ordered, cycle = _parents_first(kind, entries)
        if cycle:
            errors.extend(cycle)
        for index, entry in ordered:
            done += 1
            if on_progress is not None and (done % 100 == 0 or done == total):
                on_progress(done, total)
            values = entry.model_dump()
            key = values[ek.key]
            where = ek.section if kind == "consortium" else f"{ek.section}[{index}] (id={key})"
            model: Any = ek.model
            existing = known[kind].get(key)
            probe = existing or model(
                **{k: v for k, v in values.items() if k not in ("requirements", "offered_by")}
            )
            owner = ek.owner(session, probe)
            if not actor.can_act_for(owner):
                failed.add((kind, key))
                errors.append(
                    FieldError(
                        where,
                        f"{actor.username!r} may not change entries of "
                        f"{owner or 'the consortium'!r}",
                    )
                )
                continue
            if any((target, values.get(f)) in failed for f, target in ek.refs):
                failed.add((kind, key))  # its parent was refused: that error is the one to fix
                continue
            ref_errors = _check_refs(session, kind, values, where, lookup)
            if ref_errors:
                failed.add((kind, key))
                errors.extend(ref_errors)
                continue
            if existing is None:
                obj = model()
                _write(session, kind, obj, dict(values))
                session.add(obj)
                known[kind][key] = obj
                summary.created[kind] = summary.created.get(kind, 0) + 1
                audit.record(
                    session,
                    actor=actor,
                    action=AuditAction.CREATE,
                    entity_type=kind,
                    entity_id=key,
                    entity_institution=owner,
                    after=catalog_service.to_dict(kind, obj),
                    source=source,
                    detail="catalog import",
                )
                continue
            before = catalog_service.to_dict(kind, existing)
            if before == entry.model_dump(mode="json"):
                summary.unchanged[kind] = summary.unchanged.get(kind, 0) + 1
                continue
            _write(session, kind, existing, dict(values))
            summary.updated[kind] = summary.updated.get(kind, 0) + 1
            audit.record(
                session,
                actor=actor,
                action=AuditAction.UPDATE,
                entity_type=kind,
                entity_id=key,
                entity_institution=owner,
                before=before,
                after=catalog_service.to_dict(kind, existing),
                source=source,
                detail="catalog import",
            )
        if not errors:
            session.flush()  # section by section: parents are in before their children
    if errors:
        raise InvalidInput(
            f"the catalogue document has {len(errors)} error(s); nothing was imported", errors
        )
    audit.record(
        session,
        actor=actor,
        action=AuditAction.EXECUTE,
        entity_type="catalog",
        entity_id=doc.consortium.id,
        after=summary.as_dict(),
        source=source,
        detail="catalog import",
    )
    events.emit(
        session,
        type="catalog.imported",
        entity_type="catalog",
        entity_id=doc.consortium.id,
        payload=summary.as_dict(),
    )
    return summary


__all__ = [
    "ImportSummary",
    "do_create_entry",
    "do_delete_entry",
    "do_import_catalog",
    "do_update_entry",
    "parse_document",
]
