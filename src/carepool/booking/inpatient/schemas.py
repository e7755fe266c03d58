"""Request bodies of the inpatient API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carepool.booking.inpatient.models import PatientSex, Priority
from carepool.catalog.codes import BED_FEATURES


class AdmissionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    institution_id: str = Field(description="the member that admits the patient")
    patient_ref: str = Field(min_length=1, max_length=128)
    patient_name: str = Field("", max_length=200)
    patient_sex: PatientSex
    age: int = Field(ge=0, le=130)
    department_id: str | None = Field(None, description="any ward of this department")
    ward_id: str | None = Field(None, description="this ward")
    needed_features: list[str] = Field(default_factory=list, description="bed features needed")
    isolation: bool = False
    priority: Priority = Priority.ELECTIVE
    expected_stay_days: int = Field(ge=1, le=365)
    planned_admit_at: datetime | None = Field(None, description="default: now")
    note: str = ""

    @field_validator("needed_features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in BED_FEATURES]
        if unknown:
            raise ValueError(
                f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(BED_FEATURES)}"
            )
        return sorted(set(value))


class BedChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bed_id: str


class AdmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bed_id: str | None = Field(None, description="default: the reserved bed")


class TransferBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bed_id: str
    reason: str = ""


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = ""


class DischargeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = ""
