"""Reads of terminology: the current maps as a `Terminology` snapshot, map history, the queue."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepool.catalog import service as catalog_service
from carepool.core.errors import InvalidInput
from carepool.terminology.models import MapKind, TermMap, TermMapping, TermStatus, UnmappedTerm
from carepool.terminology.resolver import GLOBAL, MapLayer, Terminology
from carepool.terminology.seed import load_seed, norm_text
from carepool.terminology.suggest import Suggestion, suggest


def map_key(kind: MapKind, match: str, source: str) -> str:
    """How a mapping's source is stored: codes as sent, names and units folded."""
    if kind is MapKind.CODE and match == "code":
        return source.strip()
    if kind is MapKind.UNIT:
        from carepool.terminology.units import normalise_unit

        return normalise_unit(source)
    return norm_text(source)


def _member_departments(session: Session) -> dict[str, dict[str, str]]:
    """Each member's catalogue departments by local name (and id), mapped to their codes."""
    out: dict[str, dict[str, str]] = {}
    items, _total = catalog_service.get_all(session, kind="department", limit=100_000)
    for d in items:
        names = out.setdefault(d.institution_id, {})
        for name in (d.id, d.local_name, d.local_name_zh):
            if name:
                names.setdefault(norm_text(name), d.code)
    return out


def snapshot(session: Session) -> Terminology:
    """Every current map (and each member's catalogue departments) as one pure lookup object."""
    maps: dict[tuple[str, str], MapLayer] = {}
    by_id: dict[int, MapLayer] = {}
    for m in session.scalars(select(TermMap)):
        layer = MapLayer(version=m.version)
        maps[(m.kind.value, m.scope)] = layer
        by_id[m.id] = layer
    stmt = select(TermMapping).where(TermMapping.valid_to.is_(None))
    for row in session.scalars(stmt):
        layer = by_id[row.map_id]
        if row.match == "code":
            layer.by_code[(row.source_system, row.source)] = row.target
        else:
            layer.by_name[row.source] = row.target
    return Terminology(seed=load_seed(), maps=maps, member_departments=_member_departments(session))


def get_map(session: Session, *, kind: MapKind, scope: str = GLOBAL) -> TermMap | None:
    return session.scalar(select(TermMap).where(TermMap.kind == kind, TermMap.scope == scope))


def get_all_maps(session: Session) -> list[TermMap]:
    return list(session.scalars(select(TermMap).order_by(TermMap.kind, TermMap.scope)))


def get_entries(
    session: Session,
    *,
    kind: MapKind,
    scope: str = GLOBAL,
    version: int | None = None,
    history: bool = False,
) -> list[TermMapping]:
    """A stored map's entries: current ones, those valid at `version`, or every row ever."""
    term_map = get_map(session, kind=kind, scope=scope)
    if term_map is None:
        return []
    stmt = select(TermMapping).where(TermMapping.map_id == term_map.id)
    if not history:
        if version is None:
            stmt = stmt.where(TermMapping.valid_to.is_(None))
        else:
            stmt = stmt.where(
                TermMapping.valid_from <= version,
                (TermMapping.valid_to.is_(None)) | (TermMapping.valid_to > version),
            )
    return list(session.scalars(stmt.order_by(TermMapping.id)))


def entry_to_dict(row: TermMapping) -> dict[str, Any]:
    return {
        "id": row.id,
        "match": row.match,
        "source_system": row.source_system,
        "source": row.source,
        "source_display": row.source_display,
        "target": row.target,
        "note": row.note,
        "valid_from": row.valid_from,
        "valid_to": row.valid_to,
        "created_at": row.created_at.isoformat(),
        "created_by": row.created_by,
    }


def map_to_dict(m: TermMap) -> dict[str, Any]:
    return {
        "kind": m.kind.value,
        "scope": m.scope,
        "version": m.version,
        "updated_at": m.updated_at.isoformat(),
        "updated_by": m.updated_by,
    }


def get_unmapped(
    session: Session,
    *,
    kind: MapKind | None = None,
    institution_id: str | None = None,
    status: TermStatus | None = TermStatus.OPEN,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[UnmappedTerm], int]:
    """The unmapped-term queue, most frequent first."""
    stmt = select(UnmappedTerm)
    if kind is not None:
        stmt = stmt.where(UnmappedTerm.kind == kind)
    if institution_id is not None:
        stmt = stmt.where(UnmappedTerm.institution_id == institution_id)
    if status is not None:
        stmt = stmt.where(UnmappedTerm.status == status)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    stmt = stmt.order_by(UnmappedTerm.count.desc(), UnmappedTerm.id).limit(limit).offset(offset)
    return list(session.scalars(stmt)), int(total)


def get_unmapped_term(session: Session, *, id: int) -> UnmappedTerm:
    row = session.get(UnmappedTerm, id)
    if row is None:
        from carepool.core.errors import NotFound

        raise NotFound("unmapped term", str(id))
    return row


def suggestions_for(row: UnmappedTerm, *, limit: int = 5) -> list[Suggestion]:
    """Ranked targets for a queued term (by its display text, or the term itself)."""
    return suggest(row.display or row.term, row.kind.value, limit=limit)


def term_to_dict(row: UnmappedTerm, *, with_suggestions: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind.value,
        "institution_id": row.institution_id,
        "source_system": row.source_system,
        "match": row.match,
        "term": row.term,
        "display": row.display,
        "count": row.count,
        "first_seen": row.first_seen.isoformat(),
        "last_seen": row.last_seen.isoformat(),
        "status": row.status.value,
    }
    if with_suggestions:
        out["suggestions"] = [
            {"target": s.target, "display": s.display, "score": s.score, "matched": s.matched}
            for s in suggestions_for(row)
        ]
    return out


def parse_kind(value: str) -> MapKind:
    try:
        return MapKind(value)
    except ValueError as exc:
        raise InvalidInput(
            f"unknown map kind {value!r}; use one of {', '.join(k.value for k in MapKind)}"
        ) from exc


def equivalent_codes(code: str) -> frozenset[str]:
    """The LOINC codes of `code`'s analyte equivalence group, `code` itself included.

    One group is one component measured in circulating blood (blood, serum, plasma, serum or
    plasma; arterial, venous, capillary), in mass or substance concentration, under older and
    newer codes (by method, automated or manual count). Built from the shipped LOINC table; a
    code outside it is a group of its own. Stored observations keep their own code and
    specimen: the group is for finding them together, not for filing them under one code.
    """
    code = code.strip()
    return load_seed().groups.get(code) or frozenset({code})


def filed_code(code: str) -> str:
    """The standard code results sent under `code` are filed under (a mass code of an analyte
    reported in SI is filed under its substance code, with the same specimen)."""
    code = code.strip()
    return load_seed().equivalents.get(code, (code, None))[0]
