"""FHIR R4 `ServiceRequest` read and search over referrals and lab/exam orders.

Both flows are requests for a service from one member to another, so one resource type serves
both; ids stay the platform's (`ref-...` referrals, `ord-...` orders), so an Appointment's
`basedOn` (ServiceRequest/<referral id>) resolves here.

| ServiceRequest | referral                              | order                               |
|----------------|---------------------------------------|-------------------------------------|
| status         | requested, accepted, booked, attended | placed, routed, scheduled,          |
|                | -> active; report_returned ->         | in_progress -> active; completed -> |
|                | completed; declined, cancelled ->     | completed; cancelled -> revoked     |
|                | revoked                               |                                     |
| intent         | order                                 | order                               |
| category       | SNOMED 3457005 Patient referral       | SNOMED 108252007 Laboratory         |
|                |                                       | procedure / 363679005 Imaging       |
| code           | the service (urn:carepool:service)    | the service                         |
| requester      | Organization/<referring member>       | Organization/<ordering member>      |
| performer      | Organization/<receiving member>,      | Organization/<performing member>    |
|                | PractitionerRole/<staff> if named     | (once routed)                       |
| performerType  | the department code, if named         | -                                   |

The platform's own state travels in `urn:carepool:extension:request-status` (valueCode);
the appointment in `...:appointment` (valueReference), a returned report or a result in
`...:report-ref` / `...:result-ref` (valueString); decline and cancel reasons, report text
and the routing note are `note`s.

Only the two members of a request (and consortium-wide callers) see it; every read and
search is audited (source "fhir").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session

from carepool.booking.orders import actions as order_actions
from carepool.booking.orders import service as order_service
from carepool.booking.orders.models import Order, OrderStatus
from carepool.booking.referrals import actions as referral_actions
from carepool.booking.referrals import service as referral_service
from carepool.booking.referrals.models import Referral, ReferralStatus
from carepool.catalog import service as catalog_service
from carepool.catalog.models import ServiceCategory
from carepool.core import audit
from carepool.core.audit import AuditAction
from carepool.core.errors import FieldError, InvalidInput, NotFound
from carepool.core.fhir import FhirContext, SearchParam

Json = dict[str, Any]
Clause = ColumnElement[bool]

SNOMED = "http://snomed.info/sct"
SERVICE_SYSTEM = "urn:carepool:service"
DEPARTMENT_SYSTEM = "urn:carepool:department-code"
ID_SYSTEM = "urn:carepool:id:"
EXTENSION = "urn:carepool:extension:"
REFERRAL_CATEGORY = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}
ORDER_CATEGORIES = {
    ServiceCategory.LAB: {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"},
    ServiceCategory.IMAGING: {"system": SNOMED, "code": "363679005", "display": "Imaging"},
}
INTENT = "order"
INTENTS = (
    "proposal",
    "plan",
    "directive",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
)
FHIR_STATUSES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)

REFERRAL_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.REQUESTED: "active",
    ReferralStatus.ACCEPTED: "active",
    ReferralStatus.BOOKED: "active",
    ReferralStatus.ATTENDED: "active",
    ReferralStatus.REPORT_RETURNED: "completed",
    ReferralStatus.DECLINED: "revoked",
    ReferralStatus.CANCELLED: "revoked",
}
ORDER_STATUS: dict[OrderStatus, str] = {
    OrderStatus.PLACED: "active",
    OrderStatus.ROUTED: "active",
    OrderStatus.SCHEDULED: "active",
    OrderStatus.IN_PROGRESS: "active",
    OrderStatus.COMPLETED: "completed",
    OrderStatus.CANCELLED: "revoked",
}


def _clean(value: Any) -> Any:
    """Drop None, empty strings, lists and objects: FHIR JSON forbids them."""
    if isinstance(value, dict):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


def _service_concept(service_id: str | None, name: str | None) -> Json | None:
    if not service_id:
        return None
    return {
        "coding": [{"system": SERVICE_SYSTEM, "code": service_id, "display": name}],
        "text": name or service_id,
    }


def _ext(name: str, kind: str, value: Any) -> Json | None:
    return {"url": EXTENSION + name, kind: value} if value else None


def service_request_from_referral(referral: Referral, *, service_name: str | None = None) -> Json:
    """A referral as a FHIR R4 ServiceRequest (pure; see the module docstring)."""
    notes = [
        f"declined: {referral.decision_note}"
        if referral.status is ReferralStatus.DECLINED
        else referral.decision_note,
        f"cancelled: {referral.cancel_reason}" if referral.cancel_reason else None,
        f"report: {referral.report_text}" if referral.report_text else None,
    ]
    performer = [
        {"reference": f"Organization/{referral.to_institution_id}"},
        {"reference": f"PractitionerRole/{referral.staff_id}"} if referral.staff_id else None,
    ]
    code = _service_concept(referral.service_id, service_name)
    return _clean(
        {
            "resourceType": "ServiceRequest",
            "id": referral.id,
            "extension": [
                _ext("request-status", "valueCode", referral.status.value),
                _ext(
                    "appointment",
                    "valueReference",
                    {"reference": f"Appointment/{referral.appointment_id}"}
                    if referral.appointment_id
                    else None,
                ),
                _ext("report-ref", "valueString", referral.report_ref),
            ],
            "identifier": [{"system": ID_SYSTEM + "referral", "value": referral.id}],
            "status": REFERRAL_STATUS[referral.status],
            "intent": INTENT,
            "category": [{"coding": [REFERRAL_CATEGORY]}],
            "priority": referral.priority.value,
            "code": code,
            "subject": {
                "reference": f"Patient/{referral.patient_ref}",
                "display": referral.patient_name,
            },
            "authoredOn": referral.created_at.isoformat(),
            "requester": {
                "reference": f"Organization/{referral.from_institution_id}",
                "display": referral.referred_by,
            },
            "performerType": (
                {"coding": [{"system": DEPARTMENT_SYSTEM, "code": referral.department_code}]}
                if referral.department_code
                else None
            ),
            "performer": performer,
            "reasonCode": [{"text": referral.reason}],
            "note": [{"text": n} for n in notes if n],
        }
    )


def service_request_from_order(
    order: Order,
    *,
    service_name: str | None = None,
    category: ServiceCategory | None = None,
) -> Json:
    """A lab or exam order as a FHIR R4 ServiceRequest (pure; see the module docstring)."""
    coding = ORDER_CATEGORIES.get(category) if category is not None else None
    notes = [
        f"routing: {order.routing_note}" if order.routing_note else None,
        f"cancelled: {order.cancel_reason}" if order.cancel_reason else None,
    ]
    return _clean(
        {
            "resourceType": "ServiceRequest",
            "id": order.id,
            "extension": [
                _ext("request-status", "valueCode", order.status.value),
                _ext(
                    "appointment",
                    "valueReference",
                    {"reference": f"Appointment/{order.appointment_id}"}
                    if order.appointment_id
                    else None,
                ),
                _ext("result-ref", "valueString", order.result_ref),
            ],
            "identifier": [{"system": ID_SYSTEM + "order", "value": order.id}],
            "status": ORDER_STATUS[order.status],
            "intent": INTENT,
            "category": [{"coding": [coding]}] if coding else None,
            "priority": order.priority.value,
            "code": _service_concept(order.service_id, service_name),
            "subject": {"reference": f"Patient/{order.patient_ref}", "display": order.patient_name},
            "authoredOn": order.created_at.isoformat(),
            "requester": {
                "reference": f"Organization/{order.ordering_institution_id}",
                "display": order.clinician,
            },
            "performer": [
                {"reference": f"Organization/{order.performing_institution_id}"}
                if order.performing_institution_id
                else None
            ],
            "reasonCode": [{"text": order.indication}],
            "note": [{"text": n} for n in notes if n],
        }
    )


# --- search --------------------------------------------------------------------------------


def _invalid(param: str, message: str) -> InvalidInput:
    return InvalidInput(f"{param}: {message}", [FieldError(f"query:{param}", message)])


def _split(value: str) -> list[str]:
    """FHIR OR-values: split on commas not escaped with a backslash."""
    return [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", value) if p]


def _reference(value: str, types: tuple[str, ...]) -> tuple[str | None, str] | None:
    """(type or None, id) of `id`, `Type/id` or a URL ending so; None for another type."""
    parts = [p for p in value.split("/") if p]
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) >= 2 and parts[-2] in types:
        return parts[-2], parts[-1]
    return None


def _token(param: str, value: str, allowed: Sequence[str]) -> str:
    code = value.partition("|")[2] if "|" in value else value
    if code not in allowed:
        raise _invalid(param, f"{code!r} is not one of {', '.join(allowed)}")
    return code


class _Table:
    """How the search parameters read on one table (referrals or orders)."""

    def __init__(
        self,
        model: Any,
        patient: Any,
        requester: Any,
        performers: Mapping[str, Any],
        statuses: Mapping[Any, str],
    ) -> None:
        self.model = model
        self.patient = patient
        self.requester = requester
        self.performers = performers
        self.statuses = statuses

    def clause(self, name: str, value: str) -> Clause:
        m = self.model
        if name == "_id":
            return m.id == value
        if name == "patient":
            ref = _reference(value, ("Patient",))
            return self.patient == ref[1] if ref else false()
        if name == "requester":
            ref = _reference(value, ("Organization",))
            return self.requester == ref[1] if ref else false()
        if name == "performer":
            ref = _reference(value, tuple(self.performers))
            if ref is None:
                return false()
            columns = [self.performers[ref[0]]] if ref[0] else list(self.performers.values())
            return or_(*[c == ref[1] for c in columns])
        if name == "status":
            code = _token("status", value, FHIR_STATUSES)
            ours = [s for s, fhir in self.statuses.items() if fhir == code]
            return m.status.in_(ours) if ours else false()
        if name == "intent":
            return true() if _token("intent", value, INTENTS) == INTENT else false()
        raise _invalid(name, "not a search parameter of ServiceRequest")


REFERRALS = _Table(
    Referral,
    Referral.patient_ref,
    Referral.from_institution_id,
    {"Organization": Referral.to_institution_id, "PractitionerRole": Referral.staff_id},
    REFERRAL_STATUS,
)
ORDERS = _Table(
    Order,
    Order.patient_ref,
    Order.ordering_institution_id,
    {"Organization": Order.performing_institution_id},
    ORDER_STATUS,
)


class ServiceRequestProvider:
    """Read and search of ServiceRequest for the `/fhir` registry (`uses_context`)."""

    resource_type = "ServiceRequest"
    scope_area = "Booking"
    uses_context = True
    search_params = (
        SearchParam("_id", "token", "referral (ref-...) or order (ord-...) id"),
        SearchParam("patient", "reference", "Patient/<ref> or <ref>"),
        SearchParam("requester", "reference", "the requesting member: Organization/<id>"),
        SearchParam(
            "performer",
            "reference",
            "the performing member (Organization/<id>) or named specialist (PractitionerRole/<id>)",
        ),
        SearchParam("status", "token", "active, completed or revoked (FHIR request-status)"),
        SearchParam("intent", "token", "every request here is an order"),
    )

    def read(self, session: Session, id: str, *, ctx: FhirContext) -> Json | None:
        try:
            if id.startswith("ord-"):
                order = order_service.access_order_by_id(session, ctx.caller, id)
                order_actions.do_sync_order_from_appointment(session, now=ctx.now, order=order)
                self._audit(session, ctx, "order", id, order.ordering_institution_id)
                return self._orders(session, [order])[0]
            referral = referral_service.access_referral_by_id(session, ctx.caller, id)
        except NotFound:
            return None
        referral_actions.do_sync_referral_from_appointment(session, now=ctx.now, referral=referral)
        self._audit(session, ctx, "referral", id, referral.from_institution_id)
        return self._referrals(session, [referral])[0]

    def search(
        self,
        session: Session,
        params: Mapping[str, Sequence[str]],
        *,
        count: int,
        offset: int,
        ctx: FhirContext,
    ) -> tuple[list[Json], int]:
        """Orders, then referrals (ids sort `ord-` before `ref-`), `count` from `offset`."""
        referral_actions.do_sync_referrals(session, actor=ctx.caller, now=ctx.now)
        order_actions.do_sync_orders(session, actor=ctx.caller, now=ctx.now)
        statements = []
        for table, visible in (
            (ORDERS, order_service.visible_to(ctx.caller)),
            (REFERRALS, referral_service.visible_to(ctx.caller)),
        ):
            stmt = select(table.model)
            if visible is not None:
                stmt = stmt.where(visible)
            for key, occurrences in params.items():
                name = key.partition(":")[0]
                for raw in occurrences:
                    values = _split(raw)
                    if not values:
                        raise _invalid(key, "the parameter has no value")
                    stmt = stmt.where(or_(*[table.clause(name, v) for v in values]))
            statements.append(stmt)
        order_stmt, referral_stmt = statements
        n_orders = int(session.scalar(select(func.count()).select_from(order_stmt.subquery())) or 0)
        n_referrals = int(
            session.scalar(select(func.count()).select_from(referral_stmt.subquery())) or 0
        )
        orders: list[Order] = []
        referrals: list[Referral] = []
        if count > 0 and offset < n_orders:
            orders = list(
                session.scalars(order_stmt.order_by(Order.id).offset(offset).limit(count))
            )
        if count - len(orders) > 0:
            referrals = list(
                session.scalars(
                    referral_stmt.order_by(Referral.id)
                    .offset(max(0, offset - n_orders))
                    .limit(count - len(orders))
                )
            )
        total = n_orders + n_referrals
        patient = ", ".join(params.get("patient", []))
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type="service_request",
            entity_id=None,
            entity_institution=ctx.caller.institution_id,
            source="fhir",
            detail=f"search: {len(orders) + len(referrals)} of {total}"
            + (f", patient {patient}" if patient else ""),
        )
        return self._orders(session, orders) + self._referrals(session, referrals), total

    @staticmethod
    def _audit(
        session: Session, ctx: FhirContext, kind: str, id: str, institution: str | None
    ) -> None:
        audit.record(
            session,
            actor=ctx.caller,
            action=AuditAction.READ,
            entity_type=kind,
            entity_id=id,
            entity_institution=institution,
            source="fhir",
        )

    @staticmethod
    def _names(session: Session, ids: set[str]) -> dict[str, Any]:
        return {sid: catalog_service.get(session, kind="service", id=sid) for sid in ids}

    def _referrals(self, session: Session, rows: list[Referral]) -> list[Json]:
        services = self._names(session, {r.service_id for r in rows if r.service_id})
        return [
            service_request_from_referral(
                r, service_name=services[r.service_id].name if r.service_id else None
            )
            for r in rows
        ]

    def _orders(self, session: Session, rows: list[Order]) -> list[Json]:
        services = self._names(session, {o.service_id for o in rows})
        return [
            service_request_from_order(
                o,
                service_name=services[o.service_id].name,
                category=services[o.service_id].category,
            )
            for o in rows
        ]


PROVIDER = ServiceRequestProvider()
PROVIDERS = (PROVIDER,)
