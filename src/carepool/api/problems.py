"""Domain errors to HTTP: RFC 9457 problem documents on /api/v1, OperationOutcome on /fhir.

Every refusal (403) is written to the audit trail here, in its own transaction, so no endpoint
can forget to.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from carepool.core import audit
from carepool.core.auth import Principal
from carepool.core.errors import CarepoolError, FieldError, InvalidInput, PermissionDenied

PROBLEM_BASE = "/problems/"

_FHIR_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "invalid",
    405: "not-supported",
}


def operation_outcome(
    status: int, detail: str, errors: list[FieldError] | None = None, code: str | None = None
) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome carrying the error and, per field, where it is."""
    code = code or _FHIR_CODES.get(status, "exception")
    issues: list[dict[str, Any]] = [{"severity": "error", "code": code, "diagnostics": detail}]
    for err in errors or []:
        issues.append(
            {
                "severity": "error",
                "code": code,
                "diagnostics": err.message,
                "expression": [err.location],
            }
        )
    return {"resourceType": "OperationOutcome", "issue": issues}


def _respond(
    request: Request,
    status: int,
    title: str,
    code: str,
    detail: str,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
    fhir_code: str | None = None,
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if request.url.path.startswith("/fhir"):
        return JSONResponse(
            operation_outcome(status, detail, errors, fhir_code),
            status_code=status,
            media_type="application/fhir+json",
            headers=headers,
        )
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = [e.as_dict() for e in errors]
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


# PostgreSQL: deadlock detected, serialization failure, lock not available.
_RETRYABLE = {"40P01", "40001", "55P03"}

_METHOD_ACTIONS = {
    "GET": audit.AuditAction.READ,
    "HEAD": audit.AuditAction.READ,
    "POST": audit.AuditAction.CREATE,
    "PUT": audit.AuditAction.UPDATE,
    "PATCH": audit.AuditAction.UPDATE,
    "DELETE": audit.AuditAction.DELETE,
}


def _audit_refusal(request: Request, exc: PermissionDenied) -> None:
    """Write the refusal's audit row (on a worker thread, see `install`)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return
    audit.record_refusal(
        request.app.state.audit_sessions,
        actor=principal,
        action=_METHOD_ACTIONS.get(request.method, audit.AuditAction.EXECUTE),
        entity_type="http",
        entity_id=f"{request.method} {request.url.path}",
        entity_institution=exc.extra.get("institution"),
        detail=exc.detail,
    )


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""

    @app.exception_handler(CarepoolError)
    async def _domain(request: Request, exc: CarepoolError) -> JSONResponse:
        if isinstance(exc, PermissionDenied):
            # Never on the event loop: the write waits for a connection (or SQLite's lock)
            # that requests in flight give back only when the loop runs their clean-up, so
            # a few concurrent refusals written here froze the process for the pool timeout.
            # Refusals have a pool of their own (`audit_sessions`): a flood of them cannot
            # starve other requests of connections, nor wait on them.
            await run_in_threadpool(_audit_refusal, request, exc)
        errors = exc.errors if isinstance(exc, InvalidInput) else None
        return _respond(
            request, exc.status, exc.title, exc.code, exc.detail, errors, exc.extra, exc.fhir_code
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # Two transactions claiming the same resources in a different order: the database
        # aborts one of them. The other wins; this one is a conflict the caller may retry.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in _RETRYABLE:
            return _respond(
                request,
                409,
                "Conflict",
                "concurrent-change",
                "another request changed the same resources at the same moment; "
                "nothing was saved — search again and retry",
                fhir_code="transient",
            )
        if isinstance(exc, DataError):
            # A value the database cannot store (a number out of range, text too long for
            # its column): the request's fault, never a server error.
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
            return _respond(
                request, 422, "Invalid input", "invalid", f"a value cannot be stored: {reason}"
            )
        raise exc

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver refuses integers beyond 64 bits before any SQL runs.
        return _respond(
            request, 422, "Invalid input", "invalid", f"a number is out of range: {exc}"
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            where = loc[0] if loc else "request"
            path = ".".join(loc[1:]) if len(loc) > 1 else ""
            errors.append(
                FieldError(f"{where}:{path}" if path else where, err.get("msg", "invalid"))
            )
        detail = f"the request has {len(errors)} invalid field(s)"
        return _respond(request, 422, "Invalid input", "invalid", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail) if exc.detail else "error"
        return _respond(request, exc.status_code, detail, f"http-{exc.status_code}", detail)
