"""Tables of the inpatient flow: admissions and the housekeeping state of beds.

A bed is made busy only by a `ResourceClaim` (purpose admission) owned by an admission.

Open-ended stays: nobody knows when a patient will leave, and a patient who stays longer than
expected must never find another booking landing on their bed. So the claim of a reservation or
stay runs to `OPEN_END`, and is trimmed to the real time at transfer or discharge (it then stays
active: the claims of a bed are its exact occupancy history). A cancelled reservation's claim is
deactivated. The expected discharge is kept on the admission, for planning and the board, not on
the claim. The price: a bed cannot be reserved for a next patient until the current one leaves.

A bed's board state is derived, never stored: out of service (catalogue status), occupied (a claim
of an admitted patient covers now), to clean (`BedHousekeeping`), reserved (any other live claim),
free.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum

AdmissionId = str
BedId = str

# The end of a stay's claim while nobody knows when the patient leaves.
OPEN_END = datetime(2200, 1, 1, tzinfo=UTC)


class AdmissionStatus(enum.StrEnum):
    REQUESTED = "requested"
    BED_RESERVED = "bed_reserved"
    ADMITTED = "admitted"
    DISCHARGED = "discharged"
    CANCELLED = "cancelled"


class PatientSex(enum.StrEnum):
    """FHIR AdministrativeGender."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Priority(enum.StrEnum):
    ELECTIVE = "elective"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class BedState(enum.StrEnum):
    """What the bed board shows (derived, never stored as such)."""

    FREE = "free"
    RESERVED = "reserved"
    OCCUPIED = "occupied"
    TO_CLEAN = "to_clean"
    OUT_OF_SERVICE = "out_of_service"


class Housekeeping(enum.StrEnum):
    CLEAN = "clean"
    TO_CLEAN = "to_clean"


class Admission(Base):
    """A request to admit a patient at a member, and the stay that follows it."""

    __tablename__ = "admission"
    __table_args__ = (
        UniqueConstraint("requested_by", "idempotency_key", name="uq_admission_idempotency"),
        CheckConstraint("expected_stay_days >= 1", name="stay_positive"),
        CheckConstraint("age >= 0", name="age_non_negative"),
        Index("ix_admission_member_status", "institution_id", "status"),
    )

    id: Mapped[AdmissionId] = mapped_column(String(64), primary_key=True)
    # The member that admits the patient (owns the beds).
    institution_id: Mapped[str] = mapped_column(ForeignKey("institution.id"), nullable=False)
    # The member that asked for the admission (a clinic referring a patient in).
    requester_institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institution.id"), index=True
    )
    requested_by: Mapped[str] = mapped_column(String(64), nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    patient_ref: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    # The registered patient (records' Patient id, `Patient/<id>` at /fhir); None on rows booked
    # before patients were checked (migration 0015), whose `patient_ref` is free text.
    patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    patient_sex: Mapped[PatientSex] = mapped_column(str_enum(PatientSex, 10), nullable=False)
    age: Mapped[int] = mapped_column(Integer, nullable=False)
    # Where the patient should go: a ward, or any ward of a department (or anywhere if neither).
    department_id: Mapped[str | None] = mapped_column(ForeignKey("department.id"))
    ward_id: Mapped[str | None] = mapped_column(ForeignKey("ward.id"))
    needed_features: Mapped[list[str]] = mapped_column(JsonType, nullable=False, default=list)
    isolation: Mapped[bool] = mapped_column(nullable=False, default=False)
    priority: Mapped[Priority] = mapped_column(str_enum(Priority, 12), nullable=False)
    expected_stay_days: Mapped[int] = mapped_column(Integer, nullable=False)
    planned_admit_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expected_discharge_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    status: Mapped[AdmissionStatus] = mapped_column(
        str_enum(AdmissionStatus, 16), nullable=False, index=True
    )
    # The bed reserved or occupied now (None before reservation and after the stay).
    bed_id: Mapped[str | None] = mapped_column(ForeignKey("resource.id"), index=True)
    # Every bed the patient lay in, in order: [{"bed_id", "from", "to"}].
    bed_history: Mapped[list[dict[str, str | None]]] = mapped_column(
        JsonType, nullable=False, default=list
    )
    admitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    discharged_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    cancel_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)


class BedHousekeeping(Base):
    """Whether a bed needs cleaning before the next patient (no row: clean).

    The row also serialises assignments: every write that puts a patient into a room or takes
    one out locks the rows of the room's beds first (`SELECT ... FOR UPDATE`).
    """

    __tablename__ = "bed_housekeeping"

    bed_id: Mapped[BedId] = mapped_column(ForeignKey("resource.id"), primary_key=True)
    state: Mapped[Housekeeping] = mapped_column(str_enum(Housekeeping, 10), nullable=False)
    since: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    # The admission whose patient left the bed to be cleaned.
    last_admission_id: Mapped[str | None] = mapped_column(String(64))
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False, default="")
