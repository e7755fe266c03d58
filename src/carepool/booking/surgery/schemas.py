"""Request bodies of the surgery API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from carepool.booking.inpatient.models import Priority


class SurgeryCaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_id: str = Field(description="the member whose theatre performs it")
    service_id: str = Field(description="the procedure: a service of category surgery")
    patient_ref: str = Field(min_length=1, max_length=128)
    patient_name: str = Field("", max_length=200)
    surgeon_id: str = Field(description="the operating surgeon (a staff resource)")
    expected_duration_min: int | None = Field(
        None, ge=5, le=24 * 60, description="default: the procedure's duration"
    )
    priority: Priority = Priority.ELECTIVE
    admission_id: str | None = None
    note: str = ""


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theatre_id: str
    start: datetime = Field(description="when the operation starts (preparation comes before)")
    team: list[str] = Field(
        default_factory=list,
        description="named staff besides the surgeon (anaesthetist, nurses, assistants); "
        "roles left open are filled from the member's free staff",
        max_length=20,
    )


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""
