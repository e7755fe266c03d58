"""HTTP routes of the catalogue under /api/v1 (the only module here that knows FastAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ValidationError

from carepool.api.deps import Caller, DbSession
from carepool.catalog import actions
from carepool.catalog import service as catalog_service
from carepool.catalog.schemas import Page
from carepool.core.errors import FieldError, InvalidInput
from carepool.core.limits import MAX_OFFSET
from carepool.core.time import ensure_utc

router = APIRouter(tags=["catalog"])

# path segment -> (kind, filters a list accepts)
COLLECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "department-codes": ("department_code", ()),
    "institutions": ("institution", ("kind", "grade", "parent_id")),
    "campuses": ("campus", ("institution_id",)),
    "departments": ("department", ("institution_id", "campus_id", "code")),
    "wards": ("ward", ("institution_id", "department_id", "kind")),
    "resources": (
        "resource",
        (
            "kind",
            "type_code",
            "status",
            "institution_id",
            "campus_id",
            "department_id",
            "ward_id",
            "room_id",
            "role",
            "gender_policy",
        ),
    ),
    "calendar-rules": ("calendar_rule", ("resource_id", "label")),
    "calendar-exceptions": ("calendar_exception", ("resource_id", "kind")),
    "services": ("service", ("category", "department_code")),
}


def _validate(shape: type[BaseModel], body: dict[str, Any], where: str) -> BaseModel:
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        errors = [
            FieldError(
                f"{where}." + ".".join(str(p) for p in e["loc"]) if e["loc"] else where, e["msg"]
            )
            for e in exc.errors()
        ]
        raise InvalidInput(f"the {where} is invalid", errors) from exc


def _make_routes(segment: str, kind: str, filters: tuple[str, ...]) -> None:
    ek = catalog_service.entity(kind)
    label = kind.replace("_", " ")

    @router.get(
        f"/{segment}",
        response_model=Page,
        summary=f"List {segment}",
        name=f"list_{kind}",
        openapi_extra={
            "parameters": [
                {
                    "name": f,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": f"only entries whose {f} equals this",
                }
                for f in filters
            ]
        },
    )
    def list_entries(
        request: Request,
        session: DbSession,
        caller: Caller,
        q: str | None = Query(None, description="search in names (case-insensitive)"),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> Page:
        caller.require_scope("Catalog", "read")
        known = {*filters, "q", "limit", "offset"}
        unknown = [k for k in request.query_params if k not in known]
        if unknown:
            raise InvalidInput(
                f"unknown filter(s) {', '.join(unknown)}; {segment} can be filtered by "
                f"{', '.join(filters) or 'nothing'}",
                [FieldError(f"query:{k}", "not a filter of this list") for k in unknown],
            )
        values = {k: request.query_params.get(k) for k in filters}
        catalog_service.check_filters(kind, values)
        items, total = catalog_service.get_all(
            session, kind=kind, filters=values, search=q, limit=limit, offset=offset
        )
        return Page(
            items=[catalog_service.to_dict(kind, i) for i in items],
            total=total,
            limit=limit,
            offset=offset,
        )

    @router.get(f"/{segment}/{{id}}", summary=f"Read one {label}", name=f"get_{kind}")
    def get_entry(id: str, session: DbSession, caller: Caller) -> dict[str, Any]:
        caller.require_scope("Catalog", "read")
        return catalog_service.to_dict(kind, catalog_service.get(session, kind=kind, id=id))

    @router.post(
        f"/{segment}",
        status_code=201,
        summary=f"Create a {label}",
        name=f"create_{kind}",
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": ek.shape.model_json_schema()}},
                "required": True,
            }
        },
    )
    def create_entry(
        session: DbSession, caller: Caller, body: dict[str, Any] = Body(...)
    ) -> dict[str, Any]:
        data = _validate(ek.shape, body, label)
        obj = actions.do_create_entry(session, actor=caller, kind=kind, data=data)
        return catalog_service.to_dict(kind, obj)

    if ek.patch is not None:
        patch_shape = ek.patch

        @router.patch(
            f"/{segment}/{{id}}",
            summary=f"Change a {label}",
            name=f"update_{kind}",
            openapi_extra={
                "requestBody": {
                    "content": {"application/json": {"schema": patch_shape.model_json_schema()}},
                    "required": True,
                }
            },
        )
        def update_entry(
            id: str, session: DbSession, caller: Caller, body: dict[str, Any] = Body(...)
        ) -> dict[str, Any]:
            patch = _validate(patch_shape, body, label)
            obj = actions.do_update_entry(session, actor=caller, kind=kind, id=id, patch=patch)
            return catalog_service.to_dict(kind, obj)

    if kind in ("calendar_rule", "calendar_exception"):

        @router.delete(
            f"/{segment}/{{id}}",
            status_code=204,
            summary=f"Delete a {label}",
            name=f"delete_{kind}",
        )
        def delete_entry(id: str, session: DbSession, caller: Caller) -> None:
            actions.do_delete_entry(session, actor=caller, kind=kind, id=id)


for _segment, (_kind, _filters) in COLLECTIONS.items():
    _make_routes(_segment, _kind, _filters)


@router.get("/consortium", summary="The consortium")
def get_consortium(session: DbSession, caller: Caller) -> dict[str, Any]:
    caller.require_scope("Catalog", "read")
    items, _ = catalog_service.get_all(session, kind="consortium", limit=1)
    if not items:
        raise InvalidInput("no consortium has been set up yet; import a catalogue first")
    return catalog_service.to_dict("consortium", items[0])


@router.get("/resources/{id}/availability", summary="Computed availability of a resource")
def get_availability(
    id: str,
    session: DbSession,
    caller: Caller,
    start: datetime = Query(..., description="window start, with time zone"),
    end: datetime = Query(..., description="window end, with time zone"),
) -> dict[str, Any]:
    caller.require_scope("Catalog", "read")
    try:
        start, end = ensure_utc(start), ensure_utc(end)
    except ValueError as exc:
        raise InvalidInput(
            str(exc), [FieldError("query:start", "give a time zone, e.g. +08:00")]
        ) from exc
    if end <= start or (end - start).days > 366:
        raise InvalidInput(
            "the window must be positive and at most a year long",
            [FieldError("query:end", "must be after start, within 366 days")],
        )
    intervals = catalog_service.availability(session, resource_id=id, start=start, end=end)
    return {
        "resource_id": id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "intervals": [{"start": i.start.isoformat(), "end": i.end.isoformat()} for i in intervals],
        "minutes": int(sum((i.end - i.start).total_seconds() for i in intervals) // 60),
    }


@router.get("/catalog/export", summary="The whole catalogue as one document")
def export_catalog(session: DbSession, caller: Caller) -> dict[str, Any]:
    caller.require_scope("Catalog", "read")
    return catalog_service.export_document(session)


@router.post(
    "/catalog/import", summary="Create or update the catalogue from one document, atomically"
)
def import_catalog(
    session: DbSession, caller: Caller, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    summary = actions.do_import_catalog(session, actor=caller, raw=body)
    return summary.as_dict()
