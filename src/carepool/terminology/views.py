"""HTTP routes of terminology under /api/v1: maps, the unmapped queue, re-apply, conversion."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from carepool.api.deps import Caller, DbSession
from carepool.core.auth import Principal
from carepool.core.errors import InvalidInput
from carepool.terminology import actions, service
from carepool.terminology.models import TermStatus
from carepool.terminology.resolver import GLOBAL
from carepool.terminology.seed import load_seed
from carepool.terminology.suggest import suggest
from carepool.terminology.units import UnitError, convert, to_ucum

router = APIRouter(tags=["terminology"])


def _can_read(caller: Principal) -> None:
    if not caller.has_scope("Terminology", "read"):
        caller.require_scope("Terminology", "write")


class MappingIn(BaseModel):
    term: str = Field(min_length=1, max_length=200, description="local code, name or unit")
    target: str | None = Field(
        description="LOINC code, UCUM unit or department code; null: explicitly unmapped"
    )
    scope: str = Field(GLOBAL, description="a member's institution id, or * for the consortium")
    source_system: str = ""
    match: Literal["code", "name"] | None = None
    note: str = ""


class StatusIn(BaseModel):
    status: TermStatus


@router.get("/terminology/maps", summary="Stored maps with their versions")
def list_maps(session: DbSession, caller: Caller) -> dict[str, Any]:
    _can_read(caller)
    return {
        "seed_version": load_seed().version,
        "maps": [service.map_to_dict(m) for m in service.get_all_maps(session)],
    }


@router.get("/terminology/maps/{kind}", summary="A map's entries (now, at a version, or all)")
def get_map(
    kind: str,
    session: DbSession,
    caller: Caller,
    scope: str = Query(GLOBAL),
    version: int | None = Query(None, ge=1),
    history: bool = Query(False),
) -> dict[str, Any]:
    _can_read(caller)
    k = service.parse_kind(kind)
    term_map = service.get_map(session, kind=k, scope=scope)
    entries = service.get_entries(session, kind=k, scope=scope, version=version, history=history)
    return {
        "kind": k.value,
        "scope": scope,
        "version": term_map.version if term_map else 0,
        "entries": [service.entry_to_dict(e) for e in entries],
    }


@router.put("/terminology/maps/{kind}/entries", summary="Map a local term (a new map version)")
def put_entry(kind: str, body: MappingIn, session: DbSession, caller: Caller) -> dict[str, Any]:
    row = actions.do_set_mapping(
        session,
        actor=caller,
        kind=service.parse_kind(kind),
        term=body.term,
        target=body.target,
        scope=body.scope,
        source_system=body.source_system,
        match=body.match,
        note=body.note,
    )
    return service.entry_to_dict(row)


@router.delete("/terminology/maps/{kind}/entries", summary="Remove a local term from a map")
def delete_entry(
    kind: str,
    session: DbSession,
    caller: Caller,
    term: str = Query(...),
    scope: str = Query(GLOBAL),
    source_system: str = Query(""),
    match: Literal["code", "name"] | None = Query(None),
) -> dict[str, Any]:
    term_map = actions.do_retire_mapping(
        session,
        actor=caller,
        kind=service.parse_kind(kind),
        term=term,
        scope=scope,
        source_system=source_system,
        match=match,
    )
    return service.map_to_dict(term_map)


@router.get(
    "/terminology/unmapped", summary="Unmapped terms, most frequent first, with suggestions"
)
def list_unmapped(
    session: DbSession,
    caller: Caller,
    kind: str | None = Query(None),
    source: str | None = Query(None),
    status: str = Query("open"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> dict[str, Any]:
    _can_read(caller)
    try:
        wanted = None if status == "all" else TermStatus(status)
    except ValueError as exc:
        raise InvalidInput(f"unknown status {status!r}") from exc
    own = None if caller.consortium_wide else caller.institution_id
    items, total = service.get_unmapped(
        session,
        kind=service.parse_kind(kind) if kind else None,
        institution_id=own or source,
        status=wanted,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [service.term_to_dict(t) for t in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.post("/terminology/unmapped/{id}/status", summary="Ignore or reopen an unmapped term")
def set_status(id: int, body: StatusIn, session: DbSession, caller: Caller) -> dict[str, Any]:
    row = actions.do_set_term_status(session, actor=caller, id=id, status=body.status)
    return service.term_to_dict(row, with_suggestions=False)


@router.get("/terminology/suggest", summary="Ranked candidates for a local term")
def get_suggestions(
    caller: Caller,
    term: str = Query(..., min_length=1),
    kind: Literal["code", "unit", "department"] = Query("code"),
    limit: int = Query(5, ge=1, le=50),
) -> list[dict[str, Any]]:
    _can_read(caller)
    return [s.__dict__ for s in suggest(term, kind, limit=limit)]


@router.post("/terminology/reapply", summary="Re-standardise stored records with today's maps")
def post_reapply(
    session: DbSession, caller: Caller, source: str | None = Query(None)
) -> dict[str, int]:
    return actions.do_reapply_maps(session, actor=caller, institution_id=source)


@router.get("/terminology/convert", summary="Convert a value between units (UCUM)")
def get_convert(
    caller: Caller,
    value: float = Query(...),
    unit: str = Query(..., description="the value's unit (local spellings accepted)"),
    to: str = Query(..., description="a UCUM unit"),
    loinc: str | None = Query(None, description="the analyte, for mg/dL <-> mmol/L"),
) -> dict[str, Any]:
    _can_read(caller)
    seed = load_seed()
    source = to_ucum(unit, seed.units)
    molar_mass = seed.equivalents.get(loinc, (None, None))[1] if loinc else None
    try:
        if source is None:
            raise UnitError(f"{unit!r} is not a unit carepool knows")
        result = convert(value, source, to, molar_mass)
    except UnitError as exc:
        raise InvalidInput(str(exc)) from exc
    return {"value": value, "unit": source, "result": result, "to": to}
