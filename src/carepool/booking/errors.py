"""Typed refusals of the booking pool; each carries what the caller needs to choose again."""

from __future__ import annotations

from typing import Any

from carepool.core.errors import Conflict


class SlotTaken(Conflict):
    """The requested time is no longer free on the resources the service needs."""

    code = "slot-taken"

    def __init__(self, detail: str, taken: list[dict[str, Any]]) -> None:
        super().__init__(detail, taken=taken)
        self.taken = taken


class HoldExpired(Conflict):
    code = "hold-expired"
    fhir_code = "expired"


class QuotaExhausted(Conflict):
    code = "quota-exhausted"
    fhir_code = "business-rule"


class InvalidTransition(Conflict):
    code = "invalid-transition"
    fhir_code = "business-rule"


class IdempotencyMismatch(Conflict):
    code = "idempotency-key-reused"
    fhir_code = "duplicate"
