"""The FHIR R4 base at /fhir: CapabilityStatement, read and type-level search.

Resource types come from one registry of providers, so the CapabilityStatement, the routing
and the parameter checks never drift apart. A context serves a type by handing a provider to
`REGISTRY.register(...)` (below, at import): any object with

    resource_type: str                      "Location"
    scope_area: str                         "Catalog": callers need user/<area>.read
    search_params: Sequence[SearchParameter]  name, type, documentation, modifiers
    read(session, id) -> dict | None        the resource as FHIR JSON, None if absent
    search(session, params, *, count, offset) -> (list of dicts, total)

`params` maps a parameter name with its modifier (`name:exact`) to its occurrences; the
router has already refused unknown names and modifiers, and handles `_count`, `_offset`,
`_format` and `_pretty` itself. Providers raise `InvalidInput` for values they cannot use;
here it becomes 400, as FHIR wants for searches.

A provider may also serve instance operations (`GET /{type}/{id}/$name`) that answer with a
paged searchset Bundle: it lists their names in `operations` and has a method of the same name,
`name(session, id, *, count, offset, ctx) -> (list of dicts, total) | None`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from carepool import __version__
from carepool.api.deps import Caller, DbSession
from carepool.api.problems import operation_outcome
from carepool.booking import fhir as booking_fhir
from carepool.booking.inpatient import fhir as inpatient_fhir
from carepool.booking.referrals import fhir as referral_fhir
from carepool.catalog import fhir as catalog_fhir
from carepool.core.auth import Principal
from carepool.core.errors import FieldError, InvalidInput, NotFound
from carepool.core.fhir import FhirContext
from carepool.core.limits import MAX_OFFSET
from carepool.records import fhir as records_fhir

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT = 50
MAX_COUNT = 500
RESULT_PARAMS = ("_count", "_offset", "_format", "_pretty")
JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")


class SearchParameter(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def documentation(self) -> str: ...
    @property
    def modifiers(self) -> tuple[str, ...]: ...


class FhirProvider(Protocol):
    """Read and search of one resource type (see the module docstring)."""

    @property
    def resource_type(self) -> str: ...
    @property
    def scope_area(self) -> str: ...
    @property
    def search_params(self) -> Sequence[SearchParameter]: ...

    def read(self, session: Session, id: str) -> dict[str, Any] | None: ...

    def search(
        self, session: Session, params: Mapping[str, Sequence[str]], *, count: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]: ...


class FhirRegistry:
    """The resource types this server serves, by name."""

    def __init__(self) -> None:
        self._providers: dict[str, FhirProvider] = {}

    def register(self, provider: FhirProvider) -> None:
        if provider.resource_type in self._providers:
            raise ValueError(f"{provider.resource_type} is already registered")
        self._providers[provider.resource_type] = provider

    def get(self, resource_type: str) -> FhirProvider | None:
        return self._providers.get(resource_type)

    def types(self) -> list[str]:
        return sorted(self._providers)

    def capability_statement(self, base_url: str) -> dict[str, Any]:
        """A CapabilityStatement (R4) generated from the registered providers."""
        resources = []
        for name in self.types():
            provider = self._providers[name]
            resources.append(
                {
                    "type": name,
                    "interaction": [{"code": "read"}, {"code": "search-type"}]
                    + ([{"code": "create"}] if hasattr(provider, "create") else []),
                    "versioning": "no-version",
                    "readHistory": False,
                    "updateCreate": False,
                    "searchParam": [
                        {"name": p.name, "type": p.type, "documentation": p.documentation}
                        for p in provider.search_params
                    ],
                }
            )
            operations = getattr(provider, "operations", ())
            if operations:
                resources[-1]["operation"] = [
                    {
                        "name": op,
                        "definition": f"http://hl7.org/fhir/OperationDefinition/{name}-{op}",
                    }
                    for op in operations
                ]
        return {
            "resourceType": "CapabilityStatement",
            "id": "carepool",
            "name": "CarepoolFhirServer",
            "title": "carepool FHIR R4 server",
            "status": "active",
            "experimental": False,
            "date": datetime.now(UTC).date().isoformat(),
            "publisher": "carepool",
            "kind": "instance",
            "software": {"name": "carepool", "version": __version__},
            "implementation": {"description": "carepool FHIR R4 base", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": [FHIR_JSON, "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        "Search: repeated parameters AND, comma-separated values OR; unknown "
                        "parameters are refused (400). Paging with _count (default "
                        f"{DEFAULT_COUNT}, at most {MAX_COUNT}) and _offset."
                    ),
                    "security": {
                        "description": (
                            "Send Authorization: Bearer <token>; reading a type needs the "
                            "SMART-style scope user/<Area>.read of its area (catalogue "
                            "types: user/Catalog.read)."
                        )
                    },
                    "resource": resources,
                }
            ],
        }


REGISTRY = FhirRegistry()
# Beds show their live state from the bed board: the inpatient context wraps the catalogue's
# Location view (the assembly, not the catalogue, knows both).
_catalog_providers = [
    inpatient_fhir.LiveBedLocations(p) if p.resource_type == "Location" else p
    for p in catalog_fhir.PROVIDERS
]
for _provider_ in (
    *_catalog_providers,
    *booking_fhir.PROVIDERS,
    referral_fhir.PROVIDER,
    inpatient_fhir.EncounterProvider(),
    *records_fhir.PROVIDERS,
):
    REGISTRY.register(_provider_)  # type: ignore[arg-type]


class BadSearch(InvalidInput):
    """A search FHIR cannot run: 400 rather than the platform's 422."""

    status = 400


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def __init__(self, content: Any, status_code: int = 200, pretty: bool = False) -> None:
        self._pretty = pretty
        super().__init__(content, status_code=status_code)

    def render(self, content: Any) -> bytes:
        indent = 2 if getattr(self, "_pretty", False) else None
        separators = None if indent else (",", ":")
        return json.dumps(content, ensure_ascii=False, indent=indent, separators=separators).encode(
            "utf-8"
        )


router = APIRouter(tags=["fhir"])


def _base_url(request: Request) -> str:
    """The FHIR base URL as the caller reached it (scheme, host, root path), worked out once per
    base: `url_for` walks the whole route table, a sixth of a search's CPU."""
    cache: dict[str, str] = request.app.state.fhir_base_urls
    key = str(request.base_url)
    base = cache.get(key)
    if base is None:
        base = str(request.url_for("fhir_metadata")).removesuffix("/metadata")
        if len(cache) < 64:  # a Host header is the caller's to choose: keep the map small
            cache[key] = base
    return base


def _result_options(request: Request) -> bool:
    """Check `_format` and return whether `_pretty` asks for indented JSON."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt not in JSON_FORMATS:
        raise BadSearch(
            f"_format {fmt!r} is not served; this server speaks JSON only",
            [FieldError("query:_format", f"use one of {', '.join(JSON_FORMATS)}")],
        )
    pretty = request.query_params.get("_pretty", "false")
    if pretty not in ("true", "false"):
        raise BadSearch("_pretty must be true or false", [FieldError("query:_pretty", pretty)])
    return pretty == "true"


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_OFFSET:
        raise BadSearch(
            f"{name} must be a whole number from 0 to {MAX_OFFSET}",
            [FieldError(f"query:{name}", f"{raw!r} is not a whole number from 0 to {MAX_OFFSET}")],
        )
    return value


def _context(request: Request, caller: Principal) -> FhirContext:
    return FhirContext(caller=caller, now=request.app.state.clock.now())


def _provider(resource_type: str, caller: Principal) -> FhirProvider | FhirResponse:
    provider = REGISTRY.get(resource_type)
    if provider is None:
        outcome = operation_outcome(
            404,
            f"resource type {resource_type!r} is not supported here; "
            f"supported: {', '.join(REGISTRY.types())}",
        )
        outcome["issue"][0]["code"] = "not-supported"
        return FhirResponse(outcome, status_code=404)
    caller.require_scope(provider.scope_area, "read")
    return provider


def _search_params(
    request: Request, provider: FhirProvider
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """The provider's parameters (by name[:modifier]) and the query items to repeat in links."""
    known = {p.name: p for p in provider.search_params}
    params: dict[str, list[str]] = {}
    kept: list[tuple[str, str]] = []
    errors: list[FieldError] = []
    for key, value in request.query_params.multi_items():
        if key in ("_count", "_offset"):
            continue
        if key in RESULT_PARAMS:
            kept.append((key, value))
            continue
        name, _, modifier = key.partition(":")
        param = known.get(name)
        if param is None:
            errors.append(FieldError(f"query:{key}", "not a search parameter of this type"))
        elif modifier and modifier not in param.modifiers:
            errors.append(FieldError(f"query:{key}", f"modifier :{modifier} is not supported"))
        else:
            params.setdefault(key, []).append(value)
            kept.append((key, value))
    if errors:
        names = ", ".join(e.location.removeprefix("query:") for e in errors)
        raise BadSearch(
            f"{provider.resource_type} cannot be searched by {names}; "
            f"it takes {', '.join(sorted(known))} and {', '.join(RESULT_PARAMS)}",
            errors,
        )
    return params, kept


def _bundle(
    base: str,
    resource_type: str,
    resources: list[dict[str, Any]],
    total: int,
    kept: list[tuple[str, str]],
    count: int,
    offset: int,
    path: str | None = None,
) -> dict[str, Any]:
    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{base}/{path or resource_type}?{query}"}

    links = [link("self", offset)]
    if count > 0:
        last = max(0, (total - 1) // count * count)
        links.append(link("first", 0))
        if offset > 0:
            links.append(link("previous", max(0, offset - count)))
        if offset + count < total:
            links.append(link("next", offset + count))
        links.append(link("last", last))
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if resources:  # FHIR JSON has no empty arrays
        bundle["entry"] = [
            {
                "fullUrl": f"{base}/{r.get('resourceType', resource_type)}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ]
    return bundle


@router.get("/metadata", name="fhir_metadata", summary="CapabilityStatement")
def metadata(request: Request) -> FhirResponse:
    """What this server can do (open to everyone, as SMART clients expect)."""
    pretty = _result_options(request)
    return FhirResponse(REGISTRY.capability_statement(_base_url(request)), pretty=pretty)


@router.get("/{resource_type}", name="fhir_search", summary="Search a resource type")
def search(
    resource_type: str, request: Request, session: DbSession, caller: Caller
) -> FhirResponse:
    provider = _provider(resource_type, caller)
    if isinstance(provider, FhirResponse):
        return provider
    pretty = _result_options(request)
    count = min(_int_param(request, "_count", DEFAULT_COUNT), MAX_COUNT)
    offset = _int_param(request, "_offset", 0)
    params, kept = _search_params(request, provider)
    try:
        if getattr(provider, "uses_context", False):
            resources, total = provider.search(  # type: ignore[call-arg]
                session, params, count=count, offset=offset, ctx=_context(request, caller)
            )
        else:
            resources, total = provider.search(session, params, count=count, offset=offset)
    except BadSearch:
        raise
    except InvalidInput as exc:
        raise BadSearch(exc.detail, exc.errors) from exc
    bundle = _bundle(_base_url(request), resource_type, resources, total, kept, count, offset)
    return FhirResponse(bundle, pretty=pretty)


@router.get("/{resource_type}/{id}", name="fhir_read", summary="Read one resource")
def read(
    resource_type: str, id: str, request: Request, session: DbSession, caller: Caller
) -> FhirResponse:
    provider = _provider(resource_type, caller)
    if isinstance(provider, FhirResponse):
        return provider
    pretty = _result_options(request)
    extra = [k for k in request.query_params if k not in ("_format", "_pretty")]
    if extra:
        raise BadSearch(
            f"a read takes only _format and _pretty, not {', '.join(extra)}",
            [FieldError(f"query:{k}", "not a parameter of read") for k in extra],
        )
    if getattr(provider, "uses_context", False):
        resource = provider.read(session, id, ctx=_context(request, caller))  # type: ignore[call-arg]
    else:
        resource = provider.read(session, id)
    if resource is None:
        raise NotFound(resource_type, id)
    return FhirResponse(resource, pretty=pretty)


@router.get(
    "/{resource_type}/{id}/${operation}",
    name="fhir_instance_operation",
    summary="An instance operation (Patient/{id}/$everything)",
)
def instance_operation(
    resource_type: str,
    id: str,
    operation: str,
    request: Request,
    session: DbSession,
    caller: Caller,
) -> FhirResponse:
    """Run `$operation` on one resource; the answer is a paged searchset Bundle."""
    provider = _provider(resource_type, caller)
    if isinstance(provider, FhirResponse):
        return provider
    if operation not in getattr(provider, "operations", ()):
        outcome = operation_outcome(404, f"{resource_type} has no operation ${operation} here")
        outcome["issue"][0]["code"] = "not-supported"
        return FhirResponse(outcome, status_code=404)
    pretty = _result_options(request)
    count = min(_int_param(request, "_count", DEFAULT_COUNT), MAX_COUNT)
    offset = _int_param(request, "_offset", 0)
    extra = [k for k in request.query_params if k not in RESULT_PARAMS]
    if extra:
        raise BadSearch(
            f"${operation} takes only {', '.join(RESULT_PARAMS)}, not {', '.join(extra)}",
            [FieldError(f"query:{k}", "not a parameter of this operation") for k in extra],
        )
    kept = [(k, v) for k, v in request.query_params.multi_items() if k in ("_format", "_pretty")]
    found = getattr(provider, operation)(
        session, id, count=count, offset=offset, ctx=_context(request, caller)
    )
    if found is None:
        raise NotFound(resource_type, id)
    resources, total = found
    path = f"{resource_type}/{id}/${operation}"
    bundle = _bundle(_base_url(request), resource_type, resources, total, kept, count, offset, path)
    return FhirResponse(bundle, pretty=pretty)


@router.post("/{resource_type}", name="fhir_create", summary="Create a resource")
def create(
    resource_type: str,
    request: Request,
    session: DbSession,
    caller: Caller,
    body: dict[str, Any] = Body(..., media_type=FHIR_JSON),
) -> FhirResponse:
    """Create, for types whose provider has `create(session, resource, *, ctx, key)`.

    `If-None-Exist` (FHIR conditional create) doubles as the idempotency key.
    """
    provider = REGISTRY.get(resource_type)
    creator = getattr(provider, "create", None)
    if provider is None or creator is None:
        outcome = operation_outcome(405, f"{resource_type} cannot be created here")
        outcome["issue"][0]["code"] = "not-supported"
        return FhirResponse(outcome, status_code=405)
    if body.get("resourceType") != resource_type:
        raise BadSearch(
            f"the body must be a {resource_type} resource",
            [FieldError("body.resourceType", f"must be {resource_type!r}")],
        )
    resource, created = creator(
        session, body, ctx=_context(request, caller), key=request.headers.get("If-None-Exist")
    )
    response = FhirResponse(resource, status_code=201 if created else 200)
    response.headers["Location"] = f"{_base_url(request)}/{resource_type}/{resource['id']}"
    return response
