"""Shared pieces for contexts that serve FHIR R4 resources through the `/fhir` registry.

Providers of types that carry patient data set `uses_context = True` and receive a
`FhirContext` (the caller and the clock's now) on every call, so they can check access and
write the audit record themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from carepool.core.auth import Principal


@dataclass(frozen=True)
class FhirContext:
    caller: Principal
    now: datetime


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: str
    documentation: str
    modifiers: tuple[str, ...] = ()
