"""A living month for the demo pool: appointments, referrals, orders, admissions and surgeries.

`simulate` fills the pool around `now` with two weeks of history and two weeks of bookings. Every
random choice comes from one `random.Random(seed)`, members and services are visited in sorted
order, and every write goes through the booking actions (so it is checked, audited, evented and
guarded against double booking exactly like a user's request; a refusal is counted, never
forced).

How the month is made:

1. Theatre lists and the booking diaries are planned member by member: a surgery case is
   requested and scheduled with its whole team; a booking is made with one slot search per
   service and member over the whole window. Each case or booking is made at the simulated
   moment its patient asked for it (a few days before the slot), and only if that moment has
   already come: the further ahead, the emptier the diary, as in a real one.
2. A simulated clock then walks forward, event by event, from the start of the window to the
   real `now`: patients arrive and are seen or stay away, operations start and end, wards
   admit, transfer, discharge and clean their beds, clinics refer patients and order tests.
   What would happen after `now` is left undone: it is the future.

Wards are the costly part (every patient in a bed is two actions, every stay that ends two more),
so they start full to their usual level `WARD_HISTORY_DAYS` before `now`, with patients admitted
before that, and turn over from there; surgical stays of cases before then are not simulated.

Idempotent by content: a pool that already holds any appointment, admission, referral, order or
surgery case is left as it is (the summary then reports what is there), so building the demo
twice does not double its history.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time as wallclock
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from carepool.booking import actions as booking_actions
from carepool.booking import service as booking_service
from carepool.booking.inpatient import actions as inpatient_actions
from carepool.booking.inpatient import service as inpatient_service
from carepool.booking.inpatient.models import AdmissionStatus, PatientSex
from carepool.booking.inpatient.models import Priority as StayPriority
from carepool.booking.models import AppointmentStatus
from carepool.booking.orders import actions as order_actions
from carepool.booking.orders import service as order_service
from carepool.booking.orders.models import OrderStatus
from carepool.booking.referrals import actions as referral_actions
from carepool.booking.referrals import service as referral_service
from carepool.booking.referrals.models import Priority, ReferralStatus
from carepool.booking.surgery import actions as surgery_actions
from carepool.booking.surgery import service as surgery_service
from carepool.booking.surgery.models import SurgeryStatus
from carepool.catalog import calendar
from carepool.catalog import service as catalog_service
from carepool.catalog.models import (
    GenderPolicy,
    InstitutionKind,
    Resource,
    ResourceKind,
    ResourceStatus,
    Service,
    ServiceCategory,
    StaffRole,
    WardKind,
)
from carepool.core.auth import ROLE_SCOPES, Principal, Role
from carepool.core.errors import CarepoolError
from carepool.demo import names
from carepool.records import actions as records_actions

__all__ = [
    "DAYS_AHEAD",
    "DAYS_BACK",
    "ActivitySummary",
    "has_activity",
    "pool_counts",
    "simulate",
]

DAYS_BACK: Final = 14
DAYS_AHEAD: Final = 14
STAGE: Final = "activity"

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)
T = TypeVar("T")

GH, BR, THC, VC = (
    InstitutionKind.GENERAL_HOSPITAL,
    InstitutionKind.BRANCH_HOSPITAL,
    InstitutionKind.TOWNSHIP_HEALTH_CENTRE,
    InstitutionKind.VILLAGE_CLINIC,
)
_KIND_INDEX: Final = {GH: 0, BR: 1, THC: 2, VC: 3}

# -- the diaries ---------------------------------------------------------------------------------

# Bookings a weekday brings through the pool, per service, at a member of each kind
# (county hospital, branch hospital, township centre, village clinic). The county hospital's
# MR scanner and endoscopy rooms are asked for about as much as they can give (patients wait
# days); the branches' and centres' scanners stay half idle: the pool's point.
WEEKDAY_VOLUME: Final[dict[str, tuple[float, float, float, float]]] = {
    "ct-head": (1.5, 0, 0, 0),
    "ct-chest": (2, 0, 0, 0),
    "ct-abdomen-contrast": (0.8, 0, 0, 0),
    "mr-head": (4.5, 0, 0, 0),
    "mr-knee": (3.5, 0, 0, 0),
    "mr-lumbar": (5, 0, 0, 0),
    "dr-chest": (0.8, 0.5, 0.2, 0),
    "dr-limb": (0.4, 0.3, 0.1, 0),
    "us-abdomen": (1, 0.5, 0.2, 0),
    "us-obstetric": (0.8, 0.3, 0.1, 0),
    "echocardiography": (1.2, 0.2, 0, 0),
    "ecg": (0.4, 0.2, 0.1, 0),
    "mammography": (0.4, 0, 0, 0),
    "gastroscopy": (2.5, 0, 0, 0),
    "gastroscopy-sedation": (1.2, 0, 0, 0),
    "colonoscopy": (1.2, 0, 0, 0),
    "coronary-angiography": (0.6, 0, 0, 0),
    "lab-cbc": (0.6, 0.3, 0.1, 0),
    "lab-liver": (0.3, 0.1, 0, 0),
    "lab-renal": (0.3, 0.1, 0, 0),
    "lab-lipids": (0.2, 0.05, 0, 0),
    "lab-hba1c": (0.3, 0.1, 0, 0),
    "lab-tsh": (0.3, 0, 0, 0),
    "lab-troponin": (0.2, 0, 0, 0),
    "lab-pt": (0.2, 0, 0, 0),
    "consult-cardiology": (1.5, 0.3, 0, 0),
    "consult-endocrinology": (1.2, 0.2, 0, 0),
    "consult-orthopaedics": (1.2, 0.2, 0, 0),
    "consult-antenatal": (1, 0.3, 0, 0),
    "consult-tcm": (0.3, 0.1, 0, 0),
    "consult-gp": (0, 0.2, 0.2, 0.08),
    "teleconsult": (0.6, 0.1, 0, 0),
}
# Share of the weekday volume on Saturdays and Sundays (where the member is open at all).
WEEKEND_SHARE: Final[dict[ServiceCategory, float]] = {
    ServiceCategory.IMAGING: 0.3,
    ServiceCategory.LAB: 0.3,
    ServiceCategory.PROCEDURE: 0.0,
    ServiceCategory.CONSULTATION: 0.1,
}
# Local opening of the elective diary (hours): bookings fall between these.
ELECTIVE_HOURS: Final = (8.0, 17.5)
# Booking lead: days between the request and the slot (shortest, mean of the rest).
LEAD_DAYS: Final[dict[ServiceCategory, tuple[float, float]]] = {
    ServiceCategory.IMAGING: (0.5, 5.0),
    ServiceCategory.LAB: (0.1, 1.5),
    ServiceCategory.PROCEDURE: (1.0, 7.0),
    ServiceCategory.CONSULTATION: (0.5, 6.0),
}
CANCEL_SHARE: Final = 0.05
NO_SHOW_SHARE: Final = 0.06
FEMALE_ONLY: Final = frozenset(
    {"us-obstetric", "consult-antenatal", "caesarean-section", "mammography"}
)
MALE_ONLY: Final = frozenset({"turp"})
CANCEL_REASONS: Final = (
    "患者病情好转 / the patient feels better",
    "患者外出务工 / the patient is away for work",
    "患者要求改约 / the patient asked for another day",
    "重复预约 / booked twice",
    "已在他院检查 / done at another hospital",
    "道路中断 / road closed by the weather",
)

# -- theatres ------------------------------------------------------------------------------------

# Relative frequency of each procedure on an elective list.
CASE_MIX: Final[dict[str, float]] = {
    "lap-cholecystectomy": 4,
    "hernia-repair": 3,
    "appendectomy": 1,
    "knee-arthroscopy": 2,
    "hip-replacement": 1.5,
    "cataract-surgery": 3,
    "caesarean-section": 2,
    "turp": 1,
    "burr-hole-drainage": 0.5,
}
DAY_CASES: Final = frozenset({"cataract-surgery", "knee-arthroscopy", "hernia-repair"})
EMERGENCY_CASES: Final = ("appendectomy", "caesarean-section", "burr-hole-drainage")
THEATRE_FILL: Final = 0.6  # share of an elective list's time that gets a case
# Share of weekdays on which a theatre runs an elective list (the theatre open around the
# clock is kept for emergencies).
LIST_DAYS: Final[dict[InstitutionKind, float]] = {GH: 0.6, BR: 0.4}
CASE_CANCEL_REASONS: Final = (
    "患者血压控制不佳，暂缓手术 / blood pressure not controlled: postponed",
    "患者上呼吸道感染 / chest infection: postponed",
    "患者改变主意 / the patient changed their mind",
)
# Ward a procedure's patients stay in, by department code (the member's ward of that code).
PROCEDURE_WARD: Final[dict[str, tuple[str, ...]]] = {
    "lap-cholecystectomy": ("04.01", "04"),
    "hernia-repair": ("04.01", "04"),
    "appendectomy": ("04.01", "04"),
    "knee-arthroscopy": ("04.03", "04"),
    "hip-replacement": ("04.03", "04"),
    "cataract-surgery": ("10",),
    "caesarean-section": ("05.02",),
    "turp": ("04.04",),
    "burr-hole-drainage": ("04.02",),
}
# Days in hospital after the operation (shortest, longest).
POST_OP_DAYS: Final[dict[str, tuple[float, float]]] = {
    "lap-cholecystectomy": (2, 4),
    "hernia-repair": (1, 3),
    "appendectomy": (2, 5),
    "knee-arthroscopy": (1, 3),
    "hip-replacement": (7, 12),
    "cataract-surgery": (1, 2),
    "caesarean-section": (3, 5),
    "turp": (4, 7),
    "burr-hole-drainage": (5, 9),
}

# -- wards ---------------------------------------------------------------------------------------

# Occupancy a ward runs at (low, high), by member kind and ward kind.
OCCUPANCY: Final[dict[tuple[InstitutionKind, WardKind], tuple[float, float]]] = {
    (GH, WardKind.GENERAL): (0.84, 0.95),
    (GH, WardKind.ICU): (0.9, 1.0),
    (GH, WardKind.EMERGENCY): (0.4, 0.6),
    (BR, WardKind.GENERAL): (0.74, 0.88),
    (BR, WardKind.EMERGENCY): (0.3, 0.5),
    (THC, WardKind.GENERAL): (0.6, 0.8),
}
# Length of stay in days (shortest, longest) by department code, then by ward kind.
STAY_DAYS: Final[dict[str, tuple[float, float]]] = {
    "05.02": (2, 5),
    "05.01": (3, 7),
    "07": (3, 6),
    "10": (2, 4),
    "20": (12, 24),
    "50": (8, 15),
    "icu": (3, 8),
    "emergency": (0.5, 3),
    "surgical": (4, 10),
    "medical": (5, 12),
}
STEP_DOWN_CODES: Final = ("03.01", "03.03", "03.04", "04.01", "04.02", "03")
ADMISSION_HOURS: Final[dict[WardKind, tuple[float, float]]] = {
    WardKind.GENERAL: (9.5, 21.0),
    WardKind.ICU: (0.0, 24.0),
    WardKind.EMERGENCY: (0.0, 24.0),
}
# Housekeeping of general wards works these local hours (a bed freed later waits for the
# morning); intensive care and emergency clean around the clock.
CLEANING_HOURS: Final = (7.0, 21.0)
# Days of ward history before `now`: wards are full to their usual level that long ago, with
# patients admitted before it; each day of turnover costs about a seventh of the census again.
WARD_HISTORY_DAYS: Final = 3

# -- referrals and orders ------------------------------------------------------------------------

# Referrals sent per weekday by a member of each kind (branch, township centre, village clinic).
REFERRALS_PER_DAY: Final[dict[InstitutionKind, float]] = {BR: 0.3, THC: 0.35, VC: 0.1}
# What clinics refer patients for: (service, department code, weight, reason).
REFERRAL_TARGETS: Final[tuple[tuple[str | None, str | None, float, str], ...]] = (
    ("ct-head", None, 3, "反复头痛两周 / headaches for two weeks"),
    ("ct-chest", None, 3, "咳嗽三周，胸片见结节 / cough for three weeks, nodule on X-ray"),
    ("mr-lumbar", None, 2, "腰腿痛伴麻木 / back pain with numb legs"),
    ("mr-knee", None, 1, "膝关节扭伤后肿痛 / swollen knee after a twist"),
    ("echocardiography", None, 2, "活动后气促 / breathless on exertion"),
    ("gastroscopy", None, 2, "上腹痛伴黑便 / upper abdominal pain, black stools"),
    ("us-obstetric", None, 1, "孕20周系统超声 / 20-week anomaly scan"),
    ("consult-cardiology", None, 2, "血压控制不佳 / blood pressure not controlled"),
    ("consult-endocrinology", None, 2, "血糖控制不佳 / diabetes not controlled"),
    ("consult-orthopaedics", None, 1, "髋关节疼痛 / hip pain"),
    (None, "03.04", 1, "心悸待查 / palpitations, cause unknown"),
    (None, "04.03", 1, "腰椎间盘突出保守治疗无效 / disc prolapse, no better"),
)
DEPARTMENT_SERVICE: Final = {"03.04": "consult-cardiology", "04.03": "consult-orthopaedics"}
DECLINE_SHARE: Final = 0.1
DECLINE_REASONS: Final = (
    "无需转诊，建议基层随访 / no need to refer: follow up in primary care",
    "转诊资料不全，请补充心电图 / incomplete: please attach an ECG",
    "本周该项目暂停，请转分院 / not available this week: please refer to the branch",
)
# Orders placed per weekday by a member of each kind, and what they order.
ORDERS_PER_DAY: Final[dict[InstitutionKind, float]] = {BR: 0.2, THC: 0.25, VC: 0.1}
ORDER_MIX: Final[dict[str, float]] = {
    "lab-cbc": 3,
    "lab-liver": 2,
    "lab-renal": 2,
    "lab-hba1c": 2,
    "lab-lipids": 1,
    "lab-tsh": 1,
    "lab-troponin": 0.5,
    "lab-blood-culture": 0.5,
    "dr-chest": 2,
    "us-abdomen": 1.5,
    "ecg": 1,
    "echocardiography": 1,
}
ORDER_INDICATIONS: Final = (
    "高血压随访 / hypertension follow-up",
    "2型糖尿病随访 / type 2 diabetes follow-up",
    "乏力待查 / tiredness, cause unknown",
    "发热三天 / fever for three days",
    "体检异常复查 / recheck after a screening",
)

_HANDLE: Final = {
    Role.CLINICIAN: "doctor",
    Role.BED_MANAGER: "beds",
    Role.THEATRE_COORDINATOR: "theatre",
    Role.LAB_COORDINATOR: "lab",
}


# -- the summary ---------------------------------------------------------------------------------


@dataclass
class ActivitySummary:
    """What the pool holds after `simulate` (counts by state), and what the simulation did.

    `simulated` is False when the pool already held activity and nothing was added; `refused`
    counts the requests an action turned down (`"<what>: <error code>"`), as a real pool would,
    and the requests no slot was left for (`"<service> at <member>: diary full"`).
    """

    seed: int
    simulated: bool
    window: dict[str, str]
    appointments: dict[str, int]
    referrals: dict[str, int]
    orders: dict[str, int]
    admissions: dict[str, int]
    surgery_cases: dict[str, int]
    beds: dict[str, int]
    occupancy: dict[str, float]
    refused: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    # Wall-clock seconds per phase and per kind of action (where the time goes).
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_SYSTEM: Final = Principal.system_actor("demo")


def _by_status(count: Callable[[Any], int], states: Sequence[Any]) -> dict[str, int]:
    out = {s.value: count(s) for s in states}
    out["total"] = sum(out.values())
    return out


def pool_counts(session: Session, *, now: datetime) -> dict[str, Any]:
    """Appointments, referrals, orders, admissions and surgery cases by state; the bed board at
    `now` and the occupancy of general wards and intensive care (occupied / beds in service)."""
    counts: dict[str, Any] = {
        "appointments": _by_status(
            lambda s: booking_service.get_all_appointments(session, _SYSTEM, status=s, limit=0)[1],
            list(AppointmentStatus),
        ),
        "referrals": _by_status(
            lambda s: referral_service.get_all_referrals(session, _SYSTEM, status=s, limit=0)[1],
            list(ReferralStatus),
        ),
        "orders": _by_status(
            lambda s: order_service.get_all_orders(session, _SYSTEM, status=s, limit=0)[1],
            list(OrderStatus),
        ),
        "admissions": _by_status(
            lambda s: inpatient_service.get_all_admissions(session, _SYSTEM, status=s, limit=0)[1],
            list(AdmissionStatus),
        ),
        "surgery_cases": _by_status(
            lambda s: surgery_service.get_all_cases(session, _SYSTEM, status=s, limit=0)[1],
            list(SurgeryStatus),
        ),
    }
    board, _shown = inpatient_service.bed_board(session, _SYSTEM, now=now)
    counts["beds"] = dict(board["counts"])
    wards, _n = catalog_service.get_all(session, kind="ward", limit=100_000)
    kind_of = {w.id: w.kind for w in wards}
    occupancy: dict[str, float] = {}
    for label, kind in (("general", WardKind.GENERAL), ("icu", WardKind.ICU)):
        rows = [w["counts"] for w in board["wards"] if kind_of.get(w["id"]) is kind]
        usable = sum(c["total"] - c["out_of_service"] for c in rows)
        occupied = sum(c["occupied"] for c in rows)
        occupancy[label] = round(occupied / usable, 3) if usable else 0.0
    counts["occupancy"] = occupancy
    return counts


def has_activity(session: Session) -> bool:
    """Whether the pool already holds any appointment, admission, referral, order or case."""
    return any(
        total > 0
        for total in (
            booking_service.get_all_appointments(session, _SYSTEM, limit=0)[1],
            inpatient_service.get_all_admissions(session, _SYSTEM, limit=0)[1],
            referral_service.get_all_referrals(session, _SYSTEM, limit=0)[1],
            order_service.get_all_orders(session, _SYSTEM, limit=0)[1],
            surgery_service.get_all_cases(session, _SYSTEM, limit=0)[1],
        )
    )


def simulate(
    session: Session,
    *,
    seed: int,
    start: datetime,
    now: datetime,
    days_back: int = DAYS_BACK,
    days_ahead: int = DAYS_AHEAD,
    progress: ProgressFn | None = None,
) -> ActivitySummary:
    """Fill the pool with `days_back` days of history before `now` and `days_ahead` days of
    bookings after it, in the caller's transaction; the same catalogue, seed and `now` give the
    same month (ids aside).

    `start` is when the demo's rosters begin: nothing is booked before it (nobody was on
    duty). Does nothing when the pool already holds activity (see the module docstring).
    """
    began = wallclock.perf_counter()
    now = now.astimezone(UTC)
    sim = _Simulation(
        session,
        seed=seed,
        start=start.astimezone(UTC),
        now=now,
        days_back=days_back,
        days_ahead=days_ahead,
        progress=progress,
    )
    simulated = not has_activity(session)
    if simulated:
        sim.run()
        session.flush()
    counts = pool_counts(session, now=now)
    return ActivitySummary(
        seed=seed,
        simulated=simulated,
        window={
            "from": sim.begin.isoformat(),
            "now": now.isoformat(),
            "to": sim.end.isoformat(),
        },
        refused=dict(sorted(sim.refused.items())),
        seconds=round(wallclock.perf_counter() - began, 2),
        timings={k: round(v, 2) for k, v in sorted(sim.spent.items(), key=lambda kv: -kv[1])},
        **counts,
    )


# -- the simulation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patient:
    ref: str
    name: str
    sex: PatientSex
    age: int

    @property
    def female(self) -> bool:
        return self.sex is PatientSex.FEMALE


class _Registry:
    """Patients of each member, registered there as records Patients (MRNs like `000123`, the
    member's id as the MRN's system): bookings name them by FHIR id. A name and a sex each."""

    def __init__(self, rng: random.Random, session: Session, today: date) -> None:
        self.rng = rng
        self.session = session
        self.today = today
        self.seq: dict[str, int] = {}
        self.known: dict[str, list[_Patient]] = defaultdict(list)
        self.actor = Principal.system_actor("demo")

    def new(
        self, member: str, *, female: bool | None = None, ages: tuple[int, int, int] = (18, 90, 62)
    ) -> _Patient:
        rng = self.rng
        if female is None:
            female = rng.random() < 0.5
        low, high, mode = ages
        age = int(rng.triangular(low, high, mode))
        zh, en = names.person(rng, female=female)
        n = self.seq.get(member)
        if n is None:
            n = rng.randrange(100, 3000)
        n += rng.randint(1, 9)
        self.seq[member] = n
        sex = PatientSex.FEMALE if female else PatientSex.MALE
        record, _ = records_actions.do_register_patient(
            self.session,
            actor=self.actor,
            institution_id=member,
            local_id=f"{n:06d}",
            name=zh,
            sex=sex.value,
            birth_date=date(self.today.year - age, 1 + n % 12, 1 + n % 28),
        )
        patient = _Patient(record.id, f"{zh} {en}", sex, age)
        self.known[member].append(patient)
        return patient

    def some(self, member: str, *, female: bool | None = None) -> _Patient:
        """A patient of the member: a known one now and then, else a new one."""
        pool = [p for p in self.known[member] if female is None or p.female == female]
        if pool and self.rng.random() < 0.2:
            return self.rng.choice(pool)
        ages = (18, 42, 29) if female else (18, 90, 62)
        return self.new(member, female=female, ages=ages)


@dataclass(eq=False)
class _Bed:
    id: str
    room_id: str | None
    policy: GenderPolicy | None
    in_service: bool
    holder: _Stay | None = None  # reserved for or lying in the bed
    dirty: bool = False


@dataclass(eq=False)
class _Ward:
    id: str
    member: str
    member_kind: InstitutionKind
    department_id: str
    code: str
    kind: WardKind
    beds: list[_Bed]
    target: int = 0
    waiting: list[_Stay] = field(default_factory=list)

    def usable(self) -> list[_Bed]:
        return [b for b in self.beds if b.in_service]

    def census(self) -> int:
        return sum(1 for b in self.beds if b.holder is not None)


@dataclass(eq=False)
class _Stay:
    patient: _Patient
    ward: _Ward
    days: float
    priority: StayPriority
    requester: str
    admission_id: str | None = None
    bed: _Bed | None = None
    admitted: bool = False
    planned_at: datetime | None = None
    leave_at: datetime | None = None  # planned discharge (or step-down for ICU)
    step_down: _Ward | None = None
    gone: bool = False


@dataclass(frozen=True)
class _Slot:
    start: datetime
    block_start: datetime
    block_end: datetime
    capacity: int


class _Simulation:
    def __init__(
        self,
        session: Session,
        *,
        seed: int,
        start: datetime,
        now: datetime,
        days_back: int,
        days_ahead: int,
        progress: ProgressFn | None,
    ) -> None:
        self.session = session
        self.rng = random.Random(seed)
        self.now = now
        self.tz = ZoneInfo(catalog_service.consortium_timezone(session))
        today = now.astimezone(self.tz).date()
        first = max(today - timedelta(days=days_back), start.astimezone(self.tz).date())
        last = max(today, first) + timedelta(days=days_ahead)
        self.today = today
        self.days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        self.begin = max(self.at(first, 0), start)
        self.end = self.at(last + timedelta(days=1), 0)
        self.ward_from = max(self.begin, self.at(today - timedelta(days=WARD_HISTORY_DAYS), 0))
        self.planned_stays: list[_Stay] = []
        self.progress = progress or (lambda _stage, _done, _total: None)
        self.refused: Counter[str] = Counter()
        self.spent: defaultdict[str, float] = defaultdict(float)
        self.last_mark = 0.0
        self.keep: list[Any] = []
        self.patients = _Registry(self.rng, session, today)
        self.actors: dict[tuple[str, Role], Principal] = {}
        self.queue: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        self.seq = itertools.count()
        # Before the walk, nothing is clamped: wards fill with patients admitted before `begin`.
        self.clock = self.begin - timedelta(days=90)

    # -- helpers --------------------------------------------------------------------------------

    def at(self, day: date, hours: float) -> datetime:
        """`hours` after local midnight of `day`, in UTC."""
        midnight = datetime.combine(day, time(0), tzinfo=self.tz)
        return (midnight + timedelta(hours=hours)).astimezone(UTC)

    def local_day(self, when: datetime) -> date:
        return when.astimezone(self.tz).date()

    def local_hours(self, when: datetime) -> float:
        local = when.astimezone(self.tz)
        return local.hour + local.minute / 60

    def actor(self, member: str, role: Role = Role.CLINICIAN) -> Principal:
        key = (member, role)
        if key not in self.actors:
            self.actors[key] = Principal(
                username=f"{member}.{_HANDLE[role]}",
                role=role,
                institution_id=member,
                scopes=frozenset(ROLE_SCOPES[role]),
            )
        return self.actors[key]

    def attempt(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run one action in a savepoint; a refusal is counted and undone, never forced."""
        began = wallclock.perf_counter()
        try:
            with self.session.begin_nested():
                result = fn()
        except CarepoolError as exc:
            self.refused[f"{what}: {exc.code}"] += 1
            return None
        finally:
            self.spent[f"action: {what}"] += wallclock.perf_counter() - began
        self.keep.append(result)
        return result

    def later(self, when: datetime, fn: Callable[[datetime], None]) -> None:
        """Queue `fn` for the simulated moment `when` (dropped if that is after `now`)."""
        if when <= self.now:
            heapq.heappush(self.queue, (max(when, self.clock), next(self.seq), fn))

    def minutes(self, low: float, high: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(low, high))

    def count(self, mean: float) -> int:
        """A whole number of events around `mean` (±25 %)."""
        value = mean * self.rng.uniform(0.75, 1.25)
        whole = int(value)
        return whole + (1 if self.rng.random() < value - whole else 0)

    def working_time(self, when: datetime, hours: tuple[float, float] = (8.0, 17.0)) -> datetime:
        """`when`, or the next moment within the local working hours of a weekday after it."""
        day, h = self.local_day(when), self.local_hours(when)
        while True:
            if day.weekday() < 5 and h < hours[1]:
                return max(when, self.at(day, max(h, hours[0])))
            day, h = day + timedelta(days=1), 0.0

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> None:
        began = wallclock.perf_counter()
        self.load()
        lists = [m for m in self.members if self.theatres.get(m)]
        streams = self.streams()
        total = len(lists) + len(streams) + len(self.days)
        done = 0
        self.progress(STAGE, done, total)
        self.phase("phase: catalogue", began)
        for member in lists:
            self.plan_theatre_lists(member)
            done += 1
            self.progress(STAGE, done, total)
        self.phase("phase: theatre lists", began)
        for member, service in streams:
            self.book_diary(member, service)
            done += 1
            self.progress(STAGE, done, total)
        self.phase("phase: diaries", began)
        self.plan_wards()
        self.plan_referrals_and_orders()
        walked = 0
        while self.queue:
            when, _n, fn = heapq.heappop(self.queue)
            self.clock = when
            fn(when)
            day_index = (self.local_day(when) - self.days[0]).days
            if day_index > walked:
                walked = min(day_index, len(self.days))
                self.progress(STAGE, done + walked, total)
        self.phase("phase: walk", began)
        self.progress(STAGE, total, total)

    def phase(self, name: str, began: float) -> None:
        """Book the time since the previous phase ended (or `began`) to `name`."""
        mark = wallclock.perf_counter()
        self.spent[name] += mark - max(began, self.last_mark)
        self.last_mark = mark

    # -- the catalogue --------------------------------------------------------------------------

    def load(self) -> None:
        s = self.session
        institutions, _ = catalog_service.get_all(s, kind="institution", limit=100_000)
        self.members = sorted(i.id for i in institutions)
        self.kind = {i.id: i.kind for i in institutions}
        self.parent = {i.id: i.parent_id for i in institutions}
        departments, _ = catalog_service.get_all(s, kind="department", limit=100_000)
        self.code_of = {d.id: d.code for d in departments}
        services, _ = catalog_service.get_all(s, kind="service", limit=100_000)
        self.services: dict[str, Service] = {sv.id: sv for sv in services}
        self.offered: dict[str, list[str]] = {
            sv.id: sorted(booking_service.offering_members(s, sv)) for sv in services
        }
        resources, _ = catalog_service.get_all(s, kind="resource", limit=100_000)
        beds = [r for r in resources if r.kind is ResourceKind.BED]
        by_ward: dict[str, list[_Bed]] = defaultdict(list)
        for b in beds:
            if b.ward_id:
                by_ward[b.ward_id].append(
                    _Bed(b.id, b.room_id, b.gender_policy, b.status is ResourceStatus.IN_SERVICE)
                )
        wards, _ = catalog_service.get_all(s, kind="ward", limit=100_000)
        self.wards = [
            _Ward(
                w.id,
                w.institution_id,
                self.kind[w.institution_id],
                w.department_id,
                self.code_of.get(w.department_id, ""),
                w.kind,
                by_ward.get(w.id, []),
            )
            for w in wards
            if by_ward.get(w.id)
        ]
        self.theatres: dict[str, list[Resource]] = defaultdict(list)
        for t in resources:
            if t.kind is not ResourceKind.THEATRE:
                continue
            # The hybrid theatre is the cath lab: angiographies are booked as appointments.
            if t.status is ResourceStatus.IN_SERVICE and t.type_code != "theatre.hybrid":
                self.theatres[t.institution_id].append(t)
        self.surgeons: dict[str, list[Resource]] = defaultdict(list)
        for r in resources:
            if r.role is StaffRole.SURGEON and r.status is ResourceStatus.IN_SERVICE:
                self.surgeons[r.institution_id].append(r)
        # The actions look rows up by id; the session's identity map holds rows only weakly, so
        # holding them here spares a query per lookup (the same goes for what `attempt` made).
        self.keep.extend([*institutions, *departments, *services, *wards, *resources])

    def availability(self, resource_id: str) -> list[calendar.Interval]:
        return catalog_service.availability(
            self.session, resource_id=resource_id, start=self.begin, end=self.end
        )

    # -- theatres -------------------------------------------------------------------------------

    def ward_for(self, member: str, codes: Sequence[str], *, day: bool = False) -> _Ward | None:
        for ward in self.wards:
            if ward.member == member and day and ward.kind is WardKind.DAY_SURGERY:
                return ward
        for code in codes:
            for ward in self.wards:
                if ward.member == member and ward.kind is WardKind.GENERAL and ward.code == code:
                    return ward
        return None

    def plan_theatre_lists(self, member: str) -> None:
        """Elective lists on weekdays, theatre by theatre, and emergencies in the theatre that is
        open around the clock; each case requested and scheduled at the moment it was asked for.
        """
        procedures = [
            self.services[p]
            for p in sorted(CASE_MIX)
            if p in self.services and member in self.offered.get(p, [])
        ]
        if not procedures:
            return
        free = {t.id: self.availability(t.id) for t in self.theatres[member]}
        for r in self.surgeons[member]:
            free[r.id] = self.availability(r.id)
        busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        theatres = sorted(self.theatres[member], key=lambda t: t.id)
        for day in self.days:
            round_the_clock = [t for t in theatres if _covers(free[t.id], self.at(day, 0), 24)]
            for theatre in theatres:
                if (
                    day.weekday() < 5
                    and (theatre not in round_the_clock or len(theatres) == 1)
                    and self.rng.random() < LIST_DAYS.get(self.kind[member], 0.5)
                ):
                    self.elective_list(member, theatre, day, procedures, free, busy)
            if round_the_clock and self.rng.random() < 0.6:
                emergencies = [p for p in procedures if p.id in EMERGENCY_CASES]
                if emergencies:
                    start = self.at(day, self.rng.uniform(10, 23))
                    self.book_case(
                        member,
                        round_the_clock[0],
                        self.rng.choice(emergencies),
                        start,
                        free,
                        busy,
                        emergency=True,
                    )

    def elective_list(
        self,
        member: str,
        theatre: Resource,
        day: date,
        procedures: list[Service],
        free: dict[str, list[calendar.Interval]],
        busy: dict[str, list[tuple[datetime, datetime]]],
    ) -> None:
        open_from, open_to = self.at(day, 8), self.at(day, 18)
        if not any(i.start <= open_from and i.end >= open_to for i in free[theatre.id]):
            return
        day_theatre = theatre.type_code == "theatre.day"
        fits = [
            p
            for p in procedures
            if (p.id in DAY_CASES or not day_theatre)
            and all(
                not r.type_code or r.type_code == theatre.type_code
                for r in p.requirements
                if r.kind is ResourceKind.THEATRE
            )
        ]
        if not fits:
            return
        cursor = open_from
        while cursor < open_to:
            service = self.rng.choices(fits, weights=[CASE_MIX[p.id] for p in fits])[0]
            block = timedelta(
                minutes=service.preparation_min + service.duration_min + service.turnover_min
            )
            if cursor + block > open_to:
                break
            if self.rng.random() > THEATRE_FILL:
                cursor += timedelta(minutes=30)
                continue
            start = cursor + timedelta(minutes=service.preparation_min)
            if self.book_case(member, theatre, service, start, free, busy):
                cursor += block
            else:
                cursor += timedelta(minutes=30)

    def book_case(
        self,
        member: str,
        theatre: Resource,
        service: Service,
        start: datetime,
        free: dict[str, list[calendar.Interval]],
        busy: dict[str, list[tuple[datetime, datetime]]],
        *,
        emergency: bool = False,
    ) -> bool:
        """Request and schedule one case (with its stay) if someone asked for it by now."""
        rng = self.rng
        block_start = start - timedelta(minutes=service.preparation_min)
        end = start + timedelta(minutes=service.duration_min)
        block_end = end + timedelta(minutes=service.turnover_min)
        if block_start < self.begin or _clash(busy[theatre.id], block_start, block_end):
            return False
        req = next(
            r
            for r in service.requirements
            if r.kind is ResourceKind.STAFF and r.role is StaffRole.SURGEON
        )
        # The action finds the rest of the team on the theatre's campus: so is the surgeon.
        surgeons = [
            r
            for r in self.surgeons[member]
            if r.campus_id in (None, theatre.campus_id)
            and booking_service.matches(r, req)
            and _covers(free[r.id], block_start, (block_end - block_start).total_seconds() / 3600)
            and not _clash(busy[r.id], block_start, block_end)
        ]
        if not surgeons:
            return False
        surgeon = rng.choice(surgeons)
        if emergency:
            asked = start - self.minutes(60, 240)
        else:
            asked = self.working_time(start - timedelta(days=rng.uniform(2, 12)))
            asked = min(asked, start - timedelta(hours=12))
        if asked > self.now:
            return False  # nobody has asked for this place on the list yet
        female = True if service.id in FEMALE_ONLY else False if service.id in MALE_ONLY else None
        patient = self.patients_for_case(member, female, service.id)
        coordinator = self.actor(member, Role.THEATRE_COORDINATOR)
        day_case = theatre.type_code == "theatre.day"
        ward = self.ward_for(member, PROCEDURE_WARD.get(service.id, ()), day=day_case)
        stay: _Stay | None = None
        if ward is not None:
            if day_case:
                admit_at = block_start - self.minutes(60, 120)
                days = ((block_end - admit_at) + self.minutes(120, 240)).total_seconds() / 86400
            else:
                admit_at = self.at(self.local_day(start), 0) - timedelta(hours=rng.uniform(6, 9))
                if emergency:
                    admit_at = asked + self.minutes(10, 40)
                low, high = POST_OP_DAYS.get(service.id, (2, 5))
                days = (end - admit_at).total_seconds() / 86400 + rng.uniform(low, high)
            if admit_at + timedelta(days=days) > self.ward_from:  # else before the ward history
                stay = _Stay(
                    patient,
                    ward,
                    days,
                    StayPriority.EMERGENCY if emergency else StayPriority.ELECTIVE,
                    member,
                    planned_at=admit_at,
                )
        created = self.attempt(
            "surgery case",
            lambda: self.request_case(coordinator, asked, member, service, patient, surgeon, stay),
        )
        if created is None:
            return False
        case_id = created
        scheduled = self.attempt(
            "surgery schedule",
            lambda: surgery_actions.do_schedule_surgery_case(
                self.session,
                actor=coordinator,
                now=asked + timedelta(minutes=5),
                id=case_id,
                theatre_id=theatre.id,
                start=start,
            ),
        )
        if scheduled is None:  # nobody free for a role: the case waits on the list, requested
            if stay is not None:
                self.cancel_stay(stay, asked + timedelta(minutes=6), "手术未能排期 / not scheduled")
            return False
        for member_of_team in scheduled.team:
            busy[str(member_of_team["resource_id"])].append((block_start, block_end))
        if stay is not None:
            self.plan_stay(stay)
        if start > self.now:
            if rng.random() < 0.04:
                self.later(
                    asked + (self.now - asked) * rng.random(),
                    lambda t: self.cancel_case(coordinator, case_id, stay, t),
                )
            return True
        if rng.random() < 0.03:
            self.later(
                asked + (block_start - asked) * rng.random(),
                lambda t: self.cancel_case(coordinator, case_id, stay, t),
            )
            return True
        began = block_start + self.minutes(service.preparation_min, service.preparation_min + 15)
        finished = began + timedelta(minutes=service.duration_min * rng.uniform(0.8, 1.3))
        self.later(began, lambda t: self.step_case(coordinator, case_id, "start", t))
        self.later(finished, lambda t: self.step_case(coordinator, case_id, "complete", t))
        return True

    def patients_for_case(self, member: str, female: bool | None, service_id: str) -> _Patient:
        if service_id == "caesarean-section":
            return self.patients.new(member, female=True, ages=(20, 42, 29))
        if service_id in ("cataract-surgery", "hip-replacement", "turp"):
            return self.patients.new(member, female=female, ages=(50, 90, 72))
        return self.patients.new(member, female=female)

    def request_case(
        self,
        coordinator: Principal,
        asked: datetime,
        member: str,
        service: Service,
        patient: _Patient,
        surgeon: Resource,
        stay: _Stay | None,
    ) -> str:
        admission_id = None
        if stay is not None:
            admission_id = self.request_admission(stay, asked, note=f"{service.name_zh}术前入院")
        case, _ = surgery_actions.do_create_surgery_case(
            self.session,
            actor=coordinator,
            now=asked,
            institution_id=member,
            service_id=service.id,
            patient_ref=patient.ref,
            patient_name=patient.name,
            surgeon_id=surgeon.id,
            priority=stay.priority if stay else StayPriority.ELECTIVE,
            admission_id=admission_id,
        )
        return case.id

    def step_case(self, coordinator: Principal, case_id: str, action: str, t: datetime) -> None:
        self.attempt(
            f"surgery {action}",
            lambda: surgery_actions.do_transition_surgery_case(
                self.session, actor=coordinator, now=t, id=case_id, action=action
            ),
        )

    def cancel_case(
        self, coordinator: Principal, case_id: str, stay: _Stay | None, t: datetime
    ) -> None:
        reason = self.rng.choice(CASE_CANCEL_REASONS)
        self.attempt(
            "surgery cancel",
            lambda: surgery_actions.do_transition_surgery_case(
                self.session, actor=coordinator, now=t, id=case_id, action="cancel", reason=reason
            ),
        )
        if stay is not None and not stay.admitted:
            self.cancel_stay(stay, t, reason)

    # -- diaries --------------------------------------------------------------------------------

    def streams(self) -> list[tuple[str, Service]]:
        out = []
        for service_id in sorted(WEEKDAY_VOLUME):
            service = self.services.get(service_id)
            if service is None:
                continue
            for member in self.offered.get(service_id, []):
                if WEEKDAY_VOLUME[service_id][_KIND_INDEX[self.kind[member]]] > 0:
                    out.append((member, service))
        return out

    def requester_for(self, member: str, service: Service) -> str:
        """Who asks: the member's own doctors, or a clinic, centre or branch that may order it."""
        kind = self.kind[member]
        rng = self.rng
        own = {GH: 0.5, BR: 0.7, THC: 0.8, VC: 1.0}[kind]
        allowed = set(service.orderable_by_kinds or [k.value for k in InstitutionKind])
        if self.kind[member].value in allowed and rng.random() < own:
            return member
        if kind is GH:
            others = [m for m in self.members if m != member and self.kind[m].value in allowed]
        else:
            others = [
                m
                for m in self.members
                if m != member
                and self.kind[m].value in allowed
                and (self.parent.get(m) == member or self.parent.get(m) == self.parent.get(member))
            ]
        if not others:
            return member
        return rng.choice(others)

    def book_diary(self, member: str, service: Service) -> None:
        """One service's diary at one member: requests for every day of the window, each booked
        at the moment it was made (if that moment has come) into a slot the search offered."""
        rng = self.rng
        volume = WEEKDAY_VOLUME[service.id][_KIND_INDEX[self.kind[member]]]
        weekend = WEEKEND_SHARE.get(service.category, 0.0)
        lead_min, lead_mean = LEAD_DAYS.get(service.category, (0.5, 3.0))
        requests = [
            (day, timedelta(days=lead_min + rng.expovariate(1 / lead_mean)))
            for day in self.days
            for _ in range(self.count(volume * (1 if day.weekday() < 5 else weekend)))
        ]
        # A request is made `lead` before its slot, and only if that moment has come.
        requests = [(d, lead) for d, lead in requests if self.at(d, 8) - lead <= self.now]
        if not requests:
            return
        policy = booking_service.policy_for(self.session, service.id)
        timing = booking_service.timing(service, policy)
        searched = wallclock.perf_counter()
        found = booking_service.search_slots(
            self.session,
            service_id=service.id,
            start=self.begin,
            end=self.end,
            now=self.begin,
            institution_id=member,
            limit=100_000,
        )
        self.spent["search: diaries"] += wallclock.perf_counter() - searched
        by_day: dict[date, list[_Slot]] = defaultdict(list)
        for ms in found:
            s = ms.slot
            if ELECTIVE_HOURS[0] <= self.local_hours(s.start) and s.end <= self.at(
                self.local_day(s.start), ELECTIVE_HOURS[1]
            ):
                by_day[self.local_day(s.start)].append(
                    _Slot(s.start, s.start - timing.before, s.end + timing.after, s.capacity)
                )
        taken: dict[date, list[tuple[datetime, datetime]]] = defaultdict(list)
        for day, lead in requests:
            slot = None
            for spill in range(4):  # a full day sends the patient to the next one
                if day + timedelta(days=spill) > self.days[-1]:
                    break
                slot = self.pick_slot(by_day.get(day + timedelta(days=spill), []), taken)
                if slot is not None:
                    break
            if slot is None:
                self.refused[f"{service.id} at {member}: diary full"] += 1
                continue
            asked = slot.start - lead
            asked = self.at(self.local_day(asked), rng.uniform(8, 17))
            asked = min(asked, slot.start - timedelta(minutes=30))
            if asked > self.now:
                continue  # not asked for yet: the slot is still free
            taken[self.local_day(slot.start)].append((slot.block_start, slot.block_end))
            self.book_appointment(member, service, slot, asked)

    def pick_slot(
        self, slots: list[_Slot], taken: dict[date, list[tuple[datetime, datetime]]]
    ) -> _Slot | None:
        if not slots:
            return None
        used = taken[self.local_day(slots[0].start)]
        fitting = [
            s
            for s in slots
            if sum(1 for a, b in used if a < s.block_end and s.block_start < b) < s.capacity
        ]
        return self.rng.choice(fitting) if fitting else None

    def book_appointment(self, member: str, service: Service, slot: _Slot, asked: datetime) -> None:
        requester = self.requester_for(member, service)
        female = True if service.id in FEMALE_ONLY else False if service.id in MALE_ONLY else None
        patient = self.patients.some(requester, female=female)
        appointment = self.attempt(
            f"{service.category.value} booking",
            lambda: booking_actions.do_create_appointment(
                self.session,
                actor=self.actor(requester),
                now=asked,
                service_id=service.id,
                institution_id=member,
                start=slot.start,
                patient_ref=patient.ref,
                patient_name=patient.name,
            )[0],
        )
        if appointment is None:
            return
        self.appointment_fate(member, appointment.id, slot.start, appointment.end_at, asked)

    def appointment_fate(
        self, member: str, appointment_id: str, start: datetime, end: datetime, asked: datetime
    ) -> None:
        """Cancelled with a reason, a no-show, or seen (arrived, then fulfilled)."""
        rng = self.rng
        desk = self.actor(member)
        roll = rng.random()
        if start > self.now:
            if roll < CANCEL_SHARE and asked < self.now:
                self.later(
                    asked + (self.now - asked) * rng.random(),
                    lambda t: self.step_appointment(desk, appointment_id, "cancel", t),
                )
            return
        if roll < CANCEL_SHARE:
            when = asked + (start - asked) * rng.uniform(0.1, 0.95)
            self.later(when, lambda t: self.step_appointment(desk, appointment_id, "cancel", t))
        elif roll < CANCEL_SHARE + NO_SHOW_SHARE:
            when = start + self.minutes(20, 45)
            self.later(when, lambda t: self.step_appointment(desk, appointment_id, "no-show", t))
        else:
            arrive = max(asked + timedelta(minutes=1), start - self.minutes(5, 25))
            done = end + self.minutes(0, 15)
            self.later(arrive, lambda t: self.step_appointment(desk, appointment_id, "arrive", t))
            self.later(done, lambda t: self.step_appointment(desk, appointment_id, "fulfil", t))

    def step_appointment(
        self, desk: Principal, appointment_id: str, action: str, t: datetime
    ) -> None:
        reason = self.rng.choice(CANCEL_REASONS) if action == "cancel" else ""
        self.attempt(
            f"appointment {action}",
            lambda: booking_actions.do_transition_appointment(
                self.session, actor=desk, now=t, id=appointment_id, action=action, reason=reason
            ),
        )

    # -- wards ----------------------------------------------------------------------------------

    def plan_wards(self) -> None:
        """Each ward full to its usual level when its history opens (`WARD_HISTORY_DAYS` before
        `now`, with patients admitted before that), then a round each day keeps it there."""
        rng = self.rng
        opening = self.ward_from
        staying: Counter[str] = Counter(
            s.ward.id
            for s in self.planned_stays
            if s.planned_at is not None
            and s.planned_at <= opening < s.planned_at + timedelta(days=s.days)
        )
        for ward in self.wards:
            band = OCCUPANCY.get((ward.member_kind, ward.kind))
            if band is None:
                continue  # day-surgery beds only take the day's planned cases
            ward.target = round(len(ward.usable()) * rng.uniform(*band))
            for _ in range(ward.target - staying[ward.id]):
                stay = self.new_stay(ward)
                elapsed = stay.days * (0.5 if stay.step_down else 1.0) * rng.random()
                stay.planned_at = opening - timedelta(days=elapsed)
                self.later(stay.planned_at, partial(self.arrive, stay))
            every = (
                (0.2,) if ward.kind is WardKind.GENERAL else tuple(h + 0.2 for h in range(0, 24, 3))
            )
            for day in self.days:
                for hour in every:
                    if self.at(day, hour) >= opening:
                        self.later(self.at(day, hour), partial(self.ward_round, ward))

    def new_stay(self, ward: _Ward) -> _Stay:
        rng = self.rng
        code = ward.code
        female: bool | None = None
        ages = (18, 92, 66)
        if code.startswith("05"):
            female, ages = True, ((20, 42, 29) if code == "05.02" else (25, 75, 48))
        elif code == "07":
            ages = (0, 14, 4)
        elif code == "04.04":
            female = rng.random() < 0.15
        requester = ward.member
        if ward.member_kind in (GH, BR) and ward.kind is not WardKind.ICU and rng.random() < 0.15:
            senders = sorted(
                m for m in self.members if self.kind[m] in (THC, VC) and m != ward.member
            )
            if senders:
                requester = rng.choice(senders)
        patient = self.patients.new(requester, female=female, ages=ages)
        if ward.kind is WardKind.ICU:
            key = "icu"
        elif ward.kind is WardKind.EMERGENCY:
            key = "emergency"
        elif code in STAY_DAYS:
            key = code
        else:
            key = "surgical" if code.startswith("04") else "medical"
        days = rng.uniform(*STAY_DAYS[key])
        priority = (
            StayPriority.EMERGENCY
            if ward.kind in (WardKind.ICU, WardKind.EMERGENCY)
            else StayPriority.URGENT
            if rng.random() < 0.4
            else StayPriority.ELECTIVE
        )
        stay = _Stay(patient, ward, days, priority, requester)
        if ward.kind is WardKind.ICU or (ward.kind is WardKind.EMERGENCY and rng.random() < 0.3):
            targets = [
                w
                for w in self.wards
                if w.member == ward.member
                and w.kind is WardKind.GENERAL
                and w.code in STEP_DOWN_CODES
                and not (w.code.startswith("05") and not patient.female)
            ]
            if targets:
                stay.step_down = rng.choice(targets)
        return stay

    def ward_round(self, ward: _Ward, t: datetime) -> None:
        """Plan admissions so the ward stays near its usual occupancy (general wards: one round a
        day; intensive care and emergency: every three hours)."""
        rng = self.rng
        day = self.local_day(t)
        # General wards plan the whole day; intensive care and emergency fill up at once what
        # left or leaves within the next three hours.
        hours = 24.0 if ward.kind is WardKind.GENERAL else 1.5
        until = t + timedelta(hours=24.0 if ward.kind is WardKind.GENERAL else 3.0)
        leaving = sum(
            1
            for b in ward.beds
            if b.holder is not None
            and b.holder.admitted
            and b.holder.leave_at is not None
            and b.holder.leave_at < until
        )
        expected = ward.target + rng.randint(-1, 1)
        arrivals = expected - (ward.census() - leaving) - len(ward.waiting)
        low, high = ADMISSION_HOURS.get(ward.kind, (9.5, 21.0))
        now_h = self.local_hours(t)
        low, high = max(low, now_h), min(high, now_h + hours)
        for _ in range(max(0, arrivals) if high > low else 0):
            stay = self.new_stay(ward)
            stay.planned_at = self.at(day, rng.uniform(low, high))
            self.later(stay.planned_at, partial(self.arrive, stay))
        for stay in list(ward.waiting):
            self.later(t + self.minutes(420, 600), partial(self.try_bed, stay))

    def request_admission(self, stay: _Stay, t: datetime, note: str = "") -> str | None:
        ward = stay.ward
        actor = (
            self.actor(ward.member, Role.BED_MANAGER)
            if stay.requester == ward.member
            else self.actor(stay.requester)
        )
        admission = self.attempt(
            "admission request",
            lambda: inpatient_actions.do_create_admission(
                self.session,
                actor=actor,
                now=t,
                institution_id=ward.member,
                patient_ref=stay.patient.ref,
                patient_name=stay.patient.name,
                patient_sex=stay.patient.sex,
                age=stay.patient.age,
                expected_stay_days=max(1, round(stay.days)),
                ward_id=ward.id,
                priority=stay.priority,
                planned_admit_at=stay.planned_at,
                note=note,
            )[0],
        )
        stay.admission_id = admission.id if admission is not None else None
        return stay.admission_id

    def plan_stay(self, stay: _Stay) -> None:
        """A planned (surgical) stay: a bed reserved the afternoon before, then the admission."""
        assert stay.planned_at is not None
        self.planned_stays.append(stay)
        reserve_at = stay.planned_at - timedelta(hours=self.rng.uniform(14, 20))
        self.later(reserve_at, lambda t: self.reserve(stay, t))
        self.later(stay.planned_at, lambda t: self.arrive(stay, t))

    def free_bed(self, ward: _Ward, patient: _Patient) -> _Bed | None:
        """A clean, empty bed the patient may have: sex policy and same-sex rooms respected;
        beds joining patients of the same sex first, so empty rooms stay open for either."""
        rooms: dict[str, set[PatientSex]] = defaultdict(set)
        for b in ward.beds:
            if b.holder is not None and b.room_id:
                rooms[b.room_id].add(b.holder.patient.sex)
        joining: list[_Bed] = []
        alone: list[_Bed] = []
        for b in ward.beds:
            if not b.in_service or b.dirty or b.holder is not None:
                continue
            if b.policy is GenderPolicy.FEMALE and not patient.female:
                continue
            if b.policy is GenderPolicy.MALE and patient.female:
                continue
            others = rooms.get(b.room_id or "", set())
            if b.policy is GenderPolicy.SAME_SEX_ROOM and others - {patient.sex}:
                continue
            (joining if others else alone).append(b)
        pool = joining or alone
        return self.rng.choice(pool) if pool else None

    def reserve(self, stay: _Stay, t: datetime) -> None:
        if stay.gone or stay.admitted or stay.admission_id is None or stay.bed is not None:
            return
        bed = self.free_bed(stay.ward, stay.patient)
        if bed is None:
            return
        admission_id = stay.admission_id
        done = self.attempt(
            "bed reservation",
            lambda: inpatient_actions.do_reserve_bed(
                self.session,
                actor=self.actor(stay.ward.member, Role.BED_MANAGER),
                now=t,
                id=admission_id,
                bed_id=bed.id,
            ),
        )
        if done is not None:
            bed.holder, stay.bed = stay, bed

    def arrive(self, stay: _Stay, t: datetime) -> None:
        if stay.gone:
            return
        if stay.admission_id is None and self.request_admission(stay, t) is None:
            return
        self.try_bed(stay, t)

    def try_bed(self, stay: _Stay, t: datetime) -> None:
        """Admit into the reserved bed or a free one; with none free, the patient waits."""
        if stay.gone or stay.admitted or stay.admission_id is None:
            return
        ward = stay.ward
        bed = stay.bed or self.free_bed(ward, stay.patient)
        if bed is None:
            if stay not in ward.waiting:
                ward.waiting.append(stay)
            return
        admission_id = stay.admission_id
        done = self.attempt(
            "admission",
            lambda: inpatient_actions.do_admit_patient(
                self.session,
                actor=self.actor(ward.member, Role.BED_MANAGER),
                now=t,
                id=admission_id,
                bed_id=bed.id,
            ),
        )
        if done is None:
            return
        if stay in ward.waiting:
            ward.waiting.remove(stay)
        bed.holder, stay.bed, stay.admitted = stay, bed, True
        stay_for = timedelta(days=stay.days)
        if stay.step_down is not None:
            stay_for = timedelta(days=stay.days * 0.5)
        stay.leave_at = max(self.discharge_time(ward, t + stay_for), t + timedelta(hours=2))
        if stay.step_down is not None:
            self.later(stay.leave_at, lambda t2: self.step_down(stay, t2))
        else:
            self.later(stay.leave_at, lambda t2: self.discharge(stay, t2))

    def discharge_time(self, ward: _Ward, when: datetime) -> datetime:
        """Wards send patients home in the late morning; ICU and emergency at any hour."""
        if ward.kind in (WardKind.ICU, WardKind.EMERGENCY, WardKind.DAY_SURGERY):
            return when
        roll = self.rng.random()
        hours = (
            self.rng.uniform(9, 13)
            if roll < 0.7
            else self.rng.uniform(13, 18)
            if roll < 0.95
            else self.rng.uniform(18, 21)
        )
        return self.at(self.local_day(when), hours)

    def discharge(self, stay: _Stay, t: datetime) -> None:
        if stay.gone or not stay.admitted or stay.admission_id is None:
            return
        admission_id = stay.admission_id
        done = self.attempt(
            "discharge",
            lambda: inpatient_actions.do_discharge_patient(
                self.session,
                actor=self.actor(stay.ward.member, Role.BED_MANAGER),
                now=t,
                id=admission_id,
            ),
        )
        if done is None:
            return
        stay.gone = True
        if stay.bed is not None:
            self.vacate(stay.bed, stay.ward, t)

    def step_down(self, stay: _Stay, t: datetime, tries: int = 0) -> None:
        """Intensive care or observation done: to a bed of a general ward, or home if none."""
        target = stay.step_down
        if stay.gone or target is None or stay.admission_id is None:
            return
        bed = self.free_bed(target, stay.patient)
        if bed is None:
            if tries < 3:
                self.later(t + timedelta(hours=6), lambda t2: self.step_down(stay, t2, tries + 1))
            else:
                self.later(t + timedelta(minutes=5), lambda t2: self.discharge(stay, t2))
            return
        admission_id = stay.admission_id
        reason = (
            "病情稳定，转出ICU / stable: out of intensive care"
            if stay.ward.kind is WardKind.ICU
            else "留观后收入病房 / admitted to a ward after observation"
        )
        done = self.attempt(
            "transfer",
            lambda: inpatient_actions.do_transfer_patient(
                self.session,
                actor=self.actor(stay.ward.member, Role.BED_MANAGER),
                now=t,
                id=admission_id,
                bed_id=bed.id,
                reason=reason,
            ),
        )
        if done is None:
            return
        old_bed, old_ward = stay.bed, stay.ward
        if old_bed is not None:
            self.vacate(old_bed, old_ward, t)
        bed.holder, stay.bed, stay.ward, stay.step_down = stay, bed, target, None
        stay.leave_at = self.discharge_time(target, t + timedelta(days=stay.days * 0.8))
        self.later(stay.leave_at, lambda t2: self.discharge(stay, t2))

    def vacate(self, bed: _Bed, ward: _Ward, t: datetime) -> None:
        bed.holder, bed.dirty = None, True
        clean_at = t + self.minutes(30, 150)
        hour = self.local_hours(clean_at)
        if ward.kind is WardKind.GENERAL and not CLEANING_HOURS[0] <= hour < CLEANING_HOURS[1]:
            day = self.local_day(clean_at) + timedelta(days=1 if hour >= CLEANING_HOURS[1] else 0)
            clean_at = self.at(day, CLEANING_HOURS[0]) + self.minutes(0, 90)
        self.later(clean_at, lambda t2: self.clean(bed, ward, t2))

    def clean(self, bed: _Bed, ward: _Ward, t: datetime) -> None:
        done = self.attempt(
            "cleaning",
            lambda: inpatient_actions.do_mark_bed_cleaned(
                self.session,
                actor=self.actor(ward.member, Role.BED_MANAGER),
                now=t,
                bed_id=bed.id,
            ),
        )
        if done is None:
            return
        bed.dirty = False
        if ward.waiting:
            first = ward.waiting[0]
            self.later(t + self.minutes(5, 60), lambda t2: self.try_bed(first, t2))

    def cancel_stay(self, stay: _Stay, t: datetime, reason: str) -> None:
        stay.gone = True
        if stay.bed is not None and not stay.admitted:
            stay.bed.holder, stay.bed = None, None
        if stay.admission_id is None:
            return
        admission_id = stay.admission_id
        self.attempt(
            "admission cancel",
            lambda: inpatient_actions.do_cancel_admission(
                self.session,
                actor=self.actor(stay.ward.member, Role.BED_MANAGER),
                now=t,
                id=admission_id,
                reason=reason,
            ),
        )

    # -- referrals and orders -------------------------------------------------------------------

    def plan_referrals_and_orders(self) -> None:
        rng = self.rng
        senders = [m for m in self.members if self.kind[m] in (BR, THC, VC)]
        for day in self.days:
            if day.weekday() >= 5 or day > self.today:
                continue
            for member in senders:
                for _ in range(self.count(REFERRALS_PER_DAY.get(self.kind[member], 0))):
                    when = self.at(day, rng.uniform(8.5, 16.5))
                    self.later(when, partial(self.refer, member))
                for _ in range(self.count(ORDERS_PER_DAY.get(self.kind[member], 0))):
                    when = self.at(day, rng.uniform(8, 16))
                    self.later(when, partial(self.order, member))

    def referral_target(self, sender: str) -> tuple[str, str | None, str | None, str] | None:
        """(receiving member, service, department code, reason) for a new referral."""
        rng = self.rng
        service_id, code, _w, reason = rng.choices(
            REFERRAL_TARGETS, weights=[w for _s, _c, w, _r in REFERRAL_TARGETS]
        )[0]
        wanted = service_id or DEPARTMENT_SERVICE[code or ""]
        offering = [m for m in self.offered.get(wanted, []) if m != sender]
        hospitals = [m for m in offering if self.kind[m] in (GH, BR)]
        if not hospitals:
            return None
        county = [m for m in hospitals if self.kind[m] is GH]
        near = [m for m in hospitals if m == self.parent.get(sender)]
        if near and rng.random() < 0.4:
            to = near[0]
        elif county and self.kind[sender] is not GH:
            to = county[0]
        else:
            to = rng.choice(hospitals)
        return to, service_id, code, reason

    def refer(self, sender: str, t: datetime) -> None:
        rng = self.rng
        target = self.referral_target(sender)
        if target is None:
            return
        to, service_id, code, reason = target
        female = True if service_id in FEMALE_ONLY else None
        patient = self.patients.some(sender, female=female)
        doctor = self.actor(sender)
        referral = self.attempt(
            "referral",
            lambda: referral_actions.do_create_referral(
                self.session,
                actor=doctor,
                now=t,
                patient_ref=patient.ref,
                patient_name=patient.name,
                to_institution_id=to,
                service_id=service_id,
                department_code=code if service_id is None else None,
                reason=reason,
                priority=Priority.URGENT if rng.random() < 0.15 else Priority.ROUTINE,
            )[0],
        )
        if referral is None:
            return
        referral_id = referral.id
        decide = self.working_time(t + timedelta(hours=rng.uniform(1, 20)))
        self.later(decide, lambda t2: self.decide_referral(referral_id, sender, to, code, t2))

    def decide_referral(
        self, referral_id: str, sender: str, to: str, code: str | None, t: datetime
    ) -> None:
        rng = self.rng
        receiver = self.actor(to)
        if rng.random() < DECLINE_SHARE:
            reason = rng.choice(DECLINE_REASONS)
            self.attempt(
                "referral decline",
                lambda: referral_actions.do_decline_referral(
                    self.session, actor=receiver, now=t, id=referral_id, reason=reason
                ),
            )
            return
        window = rng.random() < 0.3
        accepted = self.attempt(
            "referral accept",
            lambda: referral_actions.do_accept_referral(
                self.session,
                actor=receiver,
                now=t,
                id=referral_id,
                note="请携带既往检查资料 / please bring earlier results",
                service_id=DEPARTMENT_SERVICE.get(code or "") if code else None,
                book_from=t if window else None,
                book_until=t + timedelta(days=14) if window else None,
            ),
        )
        if accepted is None:
            return
        book = t + timedelta(hours=rng.uniform(0.5, 30))
        self.later(book, lambda t2: self.book_referral(referral_id, sender, to, t2))

    def first_slots(self, service_id: str, member: str, t: datetime, days: float) -> list[datetime]:
        """Free daytime starts of a service at a member from the next day on (a slot search)."""
        found = booking_service.search_slots(
            self.session,
            service_id=service_id,
            start=self.at(self.local_day(t) + timedelta(days=1), 0),
            end=t + timedelta(days=days),
            now=t,
            institution_id=member,
            limit=400,
        )
        return [
            ms.slot.start
            for ms in found
            if ELECTIVE_HOURS[0] <= self.local_hours(ms.slot.start) < ELECTIVE_HOURS[1] - 0.5
        ]

    def book_referral(self, referral_id: str, sender: str, to: str, t: datetime) -> None:
        rng = self.rng
        doctor = self.actor(sender)
        referral = referral_service.access_referral_by_id(self.session, doctor, referral_id)
        if referral.status is not ReferralStatus.ACCEPTED or referral.service_id is None:
            return
        until = referral.book_until or t + timedelta(days=10)
        starts = self.first_slots(referral.service_id, to, t, min(10.0, (until - t).days))
        if not starts:
            self.refused["referral booking: no free slot"] += 1
            return
        start = rng.choice(starts[:10])
        booked = self.attempt(
            "referral booking",
            lambda: referral_actions.do_book_referral(
                self.session, actor=doctor, now=t, id=referral_id, start=start
            ),
        )
        if booked is None or booked.appointment_id is None:
            return
        appointment_id = booked.appointment_id
        service = self.services[referral.service_id]
        end = start + timedelta(minutes=service.duration_min)
        desk = self.actor(to)
        roll = rng.random()
        if roll < 0.04:
            when = t + (min(start, self.now) - t) * rng.random()
            reason = rng.choice(CANCEL_REASONS)
            self.later(when, partial(self.cancel_referral, referral_id, doctor, reason))
            return
        if roll < 0.09:
            self.later(
                start + self.minutes(20, 45),
                lambda t2: self.step_appointment(desk, appointment_id, "no-show", t2),
            )
            self.later(
                start + self.minutes(60, 180),
                lambda t2: self.sync_referral(referral_id, doctor, t2),
            )
            return
        self.later(
            start - self.minutes(5, 25),
            lambda t2: self.step_appointment(desk, appointment_id, "arrive", t2),
        )
        self.later(
            end + self.minutes(0, 15),
            lambda t2: self.step_appointment(desk, appointment_id, "fulfil", t2),
        )
        self.later(
            end + self.minutes(30, 120), lambda t2: self.sync_referral(referral_id, doctor, t2)
        )
        report_at = self.working_time(end + timedelta(hours=rng.uniform(2, 40)))
        self.later(report_at, lambda t2: self.return_report(referral_id, to, service, t2))

    def cancel_referral(
        self, referral_id: str, doctor: Principal, reason: str, t: datetime
    ) -> None:
        self.attempt(
            "referral cancel",
            lambda: referral_actions.do_cancel_referral(
                self.session, actor=doctor, now=t, id=referral_id, reason=reason
            ),
        )

    def sync_referral(self, referral_id: str, reader: Principal, t: datetime) -> None:
        """The referring clinic looks at the referral: it follows its appointment."""
        referral = referral_service.access_referral_by_id(self.session, reader, referral_id)
        self.attempt(
            "referral sync",
            lambda: referral_actions.do_sync_referral_from_appointment(
                self.session, now=t, referral=referral
            ),
        )

    def return_report(self, referral_id: str, to: str, service: Service, t: datetime) -> None:
        imaging = service.category in (ServiceCategory.IMAGING, ServiceCategory.PROCEDURE)
        text = (
            f"{service.name_zh}报告已出 / report of the {service.name.lower()} attached"
            if imaging
            else "门诊意见：调整用药，三个月后复诊 / seen: medication changed, review in 3 months"
        )
        ref = f"DiagnosticReport/{to}-{referral_id[-8:]}" if imaging else None
        self.attempt(
            "referral report",
            lambda: referral_actions.do_return_referral_report(
                self.session,
                actor=self.actor(to),
                now=t,
                id=referral_id,
                report_ref=ref,
                report_text=text,
            ),
        )

    def order(self, member: str, t: datetime) -> None:
        rng = self.rng
        offered_here = {s for s, ms in self.offered.items() if member in ms}
        mix = sorted(s for s in ORDER_MIX if s in self.services and s not in offered_here)
        if not mix:
            return
        service_id = rng.choices(mix, weights=[ORDER_MIX[s] for s in mix])[0]
        patient = self.patients.some(member)
        doctor = self.actor(member)
        indication = rng.choice(ORDER_INDICATIONS)
        order = self.attempt(
            "order",
            lambda: order_actions.do_place_order(
                self.session,
                actor=doctor,
                now=t,
                service_id=service_id,
                patient_ref=patient.ref,
                patient_name=patient.name,
                indication=indication,
            )[0],
        )
        if order is None or order.performing_institution_id is None:
            return
        order_id, performer = order.id, order.performing_institution_id
        if rng.random() < 0.05:
            reason = rng.choice(CANCEL_REASONS)
            self.later(
                t + self.minutes(20, 240), partial(self.cancel_order, order_id, doctor, reason)
            )
            return
        self.later(
            t + self.minutes(10, 180),
            lambda t2: self.schedule_order(order_id, service_id, doctor, performer, t2),
        )

    def cancel_order(self, order_id: str, doctor: Principal, reason: str, t: datetime) -> None:
        self.attempt(
            "order cancel",
            lambda: order_actions.do_cancel_order(
                self.session, actor=doctor, now=t, id=order_id, reason=reason
            ),
        )

    def schedule_order(
        self, order_id: str, service_id: str, doctor: Principal, performer: str, t: datetime
    ) -> None:
        """The clinic books the order into the performing member's first free slot."""
        first = order_service.first_free_slot(
            self.session,
            service_id=service_id,
            institution_id=performer,
            now=self.working_time(t + timedelta(minutes=30)),
            horizon=timedelta(days=3),
        )
        if first is None:
            self.refused["order schedule: no free slot"] += 1
            return
        scheduled = self.attempt(
            "order schedule",
            lambda: order_actions.do_schedule_order(
                self.session, actor=doctor, now=t, id=order_id, start=first
            ),
        )
        if scheduled is None:
            return
        rng = self.rng
        lab = self.actor(performer, Role.LAB_COORDINATOR)
        service = self.services[service_id]
        started = first + self.minutes(0, 10)
        finished = started + timedelta(minutes=service.duration_min) + self.minutes(10, 90)
        self.later(started, lambda t2: self.step_order(lab, order_id, "start", t2))
        roll = rng.random()
        result = f"DiagnosticReport/{performer}-{order_id[-8:]}"
        if roll < 0.8:
            self.later(finished, lambda t2: self.step_order(lab, order_id, "complete", t2, result))
        else:
            self.later(finished, lambda t2: self.step_order(lab, order_id, "complete", t2))
            if roll < 0.95:
                attach = finished + timedelta(hours=rng.uniform(1, 8))
                self.later(attach, lambda t2: self.step_order(lab, order_id, "attach", t2, result))

    def step_order(
        self, lab: Principal, order_id: str, action: str, t: datetime, result: str | None = None
    ) -> None:
        s = self.session
        if action == "start":
            self.attempt(
                "order start",
                lambda: order_actions.do_start_order(s, actor=lab, now=t, id=order_id),
            )
        elif action == "complete":
            self.attempt(
                "order complete",
                lambda: order_actions.do_complete_order(
                    s, actor=lab, now=t, id=order_id, result_ref=result
                ),
            )
        else:
            self.attempt(
                "order result",
                lambda: order_actions.do_attach_order_result(
                    s, actor=lab, now=t, id=order_id, result_ref=result or ""
                ),
            )


def _covers(intervals: Sequence[calendar.Interval], start: datetime, hours: float) -> bool:
    end = start + timedelta(hours=hours)
    return any(i.start <= start and i.end >= end for i in intervals)


def _clash(busy: Sequence[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    return any(a < end and start < b for a, b in busy)
