"""The domain's typed errors; `api` maps them to RFC 9457 problems and FHIR OperationOutcome.

CarepoolError
├── NotFound            an id that does not exist (404)
├── Conflict            the write clashes with existing state (409)
│   └── AlreadyExists
├── InvalidInput        the request or document is wrong; `errors` says where (422)
├── Unauthenticated     no or bad credentials (401)
└── PermissionDenied    authenticated, but not allowed (403)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One problem in an input; `location` is a readable path (`resources[3] (id=b1).ward`)."""

    location: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "message": self.message}


class CarepoolError(Exception):
    """Base of every error the domain raises on purpose."""

    status: int = 400
    title: str = "Bad request"
    code: str = "error"
    # The FHIR OperationOutcome issue type (None: derived from the HTTP status).
    fhir_code: str | None = None

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(CarepoolError):
    status = 404
    title = "Not found"
    code = "not-found"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} does not exist", kind=kind, id=ident)


class Conflict(CarepoolError):
    status = 409
    title = "Conflict"
    code = "conflict"


class AlreadyExists(Conflict):
    code = "already-exists"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} already exists", kind=kind, id=ident)


class InvalidInput(CarepoolError):
    status = 422
    title = "Invalid input"
    code = "invalid"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = list(errors or [])


class Unauthenticated(CarepoolError):
    status = 401
    title = "Unauthenticated"
    code = "login"


class PermissionDenied(CarepoolError):
    status = 403
    title = "Forbidden"
    code = "forbidden"
