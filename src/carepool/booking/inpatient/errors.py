"""Typed refusals of the inpatient flow; each names the bed and why, so a person can choose again.

CarepoolError
├── BedNotSuitable (422)     the bed itself does not fit the patient: ward, sex policy, features,
│                            isolation, member
└── Conflict (409)
    ├── BedOutOfService      the catalogue has the bed in maintenance or closed
    ├── BedNotClean          the bed waits for cleaning after the last patient
    ├── RoomNotSuitable      the room's other patients rule it out (other sex, isolation)
    └── SlotTaken
        └── BedOccupied      another admission holds the bed for the stay
"""

from __future__ import annotations

from typing import Any

from carepool.booking.errors import SlotTaken
from carepool.core.errors import CarepoolError, Conflict


class BedNotSuitable(CarepoolError):
    status = 422
    title = "Bed not suitable"
    code = "bed-not-suitable"

    def __init__(self, bed_id: str, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons), bed_id=bed_id, reasons=reasons)
        self.reasons = reasons


class RoomNotSuitable(Conflict):
    code = "room-not-suitable"

    def __init__(self, bed_id: str, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons), bed_id=bed_id, reasons=reasons)
        self.reasons = reasons


class BedOutOfService(Conflict):
    code = "bed-out-of-service"


class BedNotClean(Conflict):
    code = "bed-not-clean"


class BedOccupied(SlotTaken):
    code = "bed-occupied"

    def __init__(self, detail: str, taken: list[dict[str, Any]]) -> None:
        super().__init__(detail, taken)
