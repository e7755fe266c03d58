"""Tables of the canonical clinical store: patients, encounters, results, orders, provenance.

Every record belongs to the member that sent it (`institution_id`) and carries a natural key
(`member|kind|system|local id`, or `member|kind|#content-hash` when the source gives no id).
The primary key is derived from the natural key, so a record's id is known before it is stored
(references inside a feed resolve without a lookup) and storing the same input twice is a no-op.
Each record keeps what the source sent (`original_*`) next to the standard form.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum
from carepool.core.time import utcnow

RecordId = str


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class EncounterClass(enum.StrEnum):
    INPATIENT = "inpatient"
    OUTPATIENT = "outpatient"
    EMERGENCY = "emergency"
    VIRTUAL = "virtual"
    HOME = "home"
    OTHER = "other"


class EncounterStatus(enum.StrEnum):
    PLANNED = "planned"
    ARRIVED = "arrived"
    IN_PROGRESS = "in-progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class ResultStatus(enum.StrEnum):
    """FHIR Observation/DiagnosticReport status."""

    REGISTERED = "registered"
    PARTIAL = "partial"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"
    CORRECTED = "corrected"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


class OrderStatus(enum.StrEnum):
    """FHIR ServiceRequest status."""

    DRAFT = "draft"
    ACTIVE = "active"
    ON_HOLD = "on-hold"
    REVOKED = "revoked"
    COMPLETED = "completed"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"


class Patient(Base):
    """One member's record of a person (identity links records of the same person later)."""

    __tablename__ = "patient"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_id: Mapped[str] = mapped_column(String(200), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    family: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    given: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    # Pinyin of a Chinese name (`zhang san`), the name folded to lower case otherwise.
    name_pinyin: Mapped[str] = mapped_column(String(300), nullable=False, default="", index=True)
    sex: Mapped[Sex] = mapped_column(str_enum(Sex, 10), nullable=False, default=Sex.UNKNOWN)
    birth_date: Mapped[date | None] = mapped_column(Date)
    national_id: Mapped[str | None] = mapped_column(String(40), index=True)
    phone: Mapped[str] = mapped_column(String(40), nullable=False, default="")
    address: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    deceased: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # When the person died, if the member said (FHIR deceasedDateTime, HL7 PID-29, a CSV death
    # date); a death known only as a day is that day's local midnight. None: alive or unknown.
    deceased_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # A placeholder made because a result referred to a patient not (yet) received.
    stub: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Quality flags the connector found while parsing (`invalid-date:PID-7`).
    flags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)

    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient",
        cascade="all, delete-orphan",
        order_by="PatientIdentifier.id",
        lazy="selectin",
    )


class PatientIdentifier(Base):
    """An identifier of a patient record: the member's MRN, a national id, an insurance number."""

    __tablename__ = "patient_identifier"
    __table_args__ = (
        UniqueConstraint("patient_id", "system", "value", name="uq_patient_identifier_value"),
        Index("ix_patient_identifier_system_value", "system", "value"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    system: Mapped[str] = mapped_column(String(200), nullable=False)
    value: Mapped[str] = mapped_column(String(200), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False, default="")

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


class Encounter(Base):
    __tablename__ = "encounter"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_id: Mapped[str | None] = mapped_column(String(200))
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    encounter_class: Mapped[EncounterClass] = mapped_column(
        "class", str_enum(EncounterClass, 20), nullable=False, default=EncounterClass.OTHER
    )
    status: Mapped[EncounterStatus] = mapped_column(
        str_enum(EncounterStatus, 20), nullable=False, default=EncounterStatus.UNKNOWN
    )
    start_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    type_text: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    # The department as the member named it, and its standard code (None while unmapped).
    department_text: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    department_code: Mapped[str | None] = mapped_column(String(16), index=True)
    location: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    last_event: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    # Relationships exist so the unit of work inserts parents first; records are written and
    # read through ids, never through these attributes.
    patient: Mapped[Patient] = relationship(lazy="raise")
    flags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class DiagnosticReport(Base):
    __tablename__ = "diagnostic_report"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_id: Mapped[str | None] = mapped_column(String(200))
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    encounter_id: Mapped[str | None] = mapped_column(
        ForeignKey("encounter.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[ResultStatus] = mapped_column(
        str_enum(ResultStatus, 20), nullable=False, default=ResultStatus.UNKNOWN
    )
    loinc_code: Mapped[str | None] = mapped_column(String(20), index=True)
    display: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    original_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_code: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_text: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    category: Mapped[str] = mapped_column(String(60), nullable=False, default="")
    effective_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    conclusion: Mapped[str] = mapped_column(Text, nullable=False, default="")
    # The order this report answers, as the member named it: the id of a `clinical_order`
    # record (FHIR basedOn -> ServiceRequest, a CSV order column) and/or the placer order number
    # (HL7 OBR-2/ORC-2, a FHIR basedOn identifier). `order_id` is not a foreign key: the order
    # may arrive later, or never, and the report is kept either way.
    order_id: Mapped[str | None] = mapped_column(String(64))
    placer_number: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    patient: Mapped[Patient] = relationship(lazy="raise")
    encounter: Mapped[Encounter | None] = relationship(lazy="raise")
    flags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class Observation(Base):
    """One result: LOINC code and UCUM value (the standard), and what the member sent."""

    __tablename__ = "observation"
    __table_args__ = (
        Index("ix_observation_patient_code_time", "patient_id", "loinc_code", "effective_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_id: Mapped[str | None] = mapped_column(String(200))
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False
    )
    encounter_id: Mapped[str | None] = mapped_column(
        ForeignKey("encounter.id", ondelete="SET NULL"), index=True
    )
    report_id: Mapped[str | None] = mapped_column(
        ForeignKey("diagnostic_report.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[ResultStatus] = mapped_column(
        str_enum(ResultStatus, 20), nullable=False, default=ResultStatus.UNKNOWN
    )
    category: Mapped[str] = mapped_column(String(60), nullable=False, default="")
    # The standard: LOINC code (None while unmapped) and the value in the analyte's UCUM unit
    # (None when unmapped, implausible or not a quantity).
    loinc_code: Mapped[str | None] = mapped_column(String(20), index=True)
    display: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(60))
    ref_low: Mapped[float | None] = mapped_column(Float)
    ref_high: Mapped[float | None] = mapped_column(Float)
    # As received.
    original_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_code: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_text: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    # Every coding as sent, `[[system, code, text], ...]` (re-apply maps from these).
    codings: Mapped[list[list[str]]] = mapped_column(JsonType, nullable=False, default=list)
    value_type: Mapped[str] = mapped_column(String(20), nullable=False, default="none")
    original_value: Mapped[str] = mapped_column(Text, nullable=False, default="")
    original_unit: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    original_number: Mapped[float | None] = mapped_column(Float)
    original_ref_low: Mapped[float | None] = mapped_column(Float)
    original_ref_high: Mapped[float | None] = mapped_column(Float)
    reference_text: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    value_code: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    value_code_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    interpretation: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    effective_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # How the sent value relates to the true one: `<`, `<=`, `>=`, `>` (FHIR
    # Quantity.comparator); empty for an exact value. `value` and `original_number` are the
    # bound, never to be served without it.
    comparator: Mapped[str] = mapped_column(String(2), nullable=False, default="")
    # `implausible`, `unmapped-code`, `unmapped-unit`, parse flags, ...; `note` says why.
    flags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    note: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    standardised_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    patient: Mapped[Patient] = relationship(lazy="raise")
    encounter: Mapped[Encounter | None] = relationship(lazy="raise")
    report: Mapped[DiagnosticReport | None] = relationship(lazy="raise")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class ClinicalOrder(Base):
    """A lab or exam order as a member's system placed it (HL7 ORM/OML, FHIR ServiceRequest)."""

    __tablename__ = "clinical_order"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    id_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    local_id: Mapped[str | None] = mapped_column(String(200))
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), nullable=False, index=True
    )
    encounter_id: Mapped[str | None] = mapped_column(
        ForeignKey("encounter.id", ondelete="SET NULL")
    )
    placer_number: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    filler_number: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    status: Mapped[OrderStatus] = mapped_column(
        str_enum(OrderStatus, 20), nullable=False, default=OrderStatus.UNKNOWN
    )
    loinc_code: Mapped[str | None] = mapped_column(String(20))
    original_system: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_code: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    original_text: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    priority: Mapped[str] = mapped_column(String(20), nullable=False, default="")
    ordered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    flags: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    patient: Mapped[Patient] = relationship(lazy="raise")
    encounter: Mapped[Encounter | None] = relationship(lazy="raise")
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class OtherRecord(Base):
    """A received record of a kind the store does not model, kept as sent (never dropped)."""

    __tablename__ = "other_record"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    natural_key: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    local_id: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patient.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False)
    patient: Mapped[Patient | None] = relationship(lazy="raise")
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class Provenance(Base):
    """Where a version of a record came from: member, feed, message or file, position, time."""

    __tablename__ = "provenance"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    record_type: Mapped[str] = mapped_column(String(30), nullable=False)
    record_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    run_id: Mapped[str | None] = mapped_column(String(40), index=True)
    feed: Mapped[str] = mapped_column(String(40), nullable=False, default="")
    source: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    message: Mapped[str] = mapped_column(String(300), nullable=False, default="")
    position: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # The record's original text (HL7 segment, FHIR resource, CSV row) when the feed had one.
    original: Mapped[str | None] = mapped_column(Text)


class RecordVersion(Base):
    """The content a record had before an update replaced it (its columns as JSON).

    Provenance says where each version came from (and keeps its original text when the feed
    had one); this keeps what the store held, so a clinician or an auditor can see what a
    result or a patient's identifiers were before a member's correction.
    """

    __tablename__ = "record_version"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    record_type: Mapped[str] = mapped_column(String(30), nullable=False)
    record_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    institution_id: Mapped[str] = mapped_column(String(64), nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JsonType, nullable=False)
    replaced_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    replaced_by_run: Mapped[str | None] = mapped_column(String(40))


RECORD_MODELS: dict[str, type[Base]] = {
    "patient": Patient,
    "encounter": Encounter,
    "report": DiagnosticReport,
    "observation": Observation,
    "order": ClinicalOrder,
    "other": OtherRecord,
}
