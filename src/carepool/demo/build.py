"""Put the demo consortium into a database: catalogue, demo users, their tokens, a living month.

`build_demo` migrates, imports the generated catalogue, creates one user per role and simulates a
month of activity around now (`carepool.demo.activity`) in one transaction. It is idempotent: on
a database that already holds the same demo it changes nothing but issues fresh tokens (the
activity is simulated only into a pool that has none); on a database that holds another
catalogue it refuses.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from carepool.catalog import actions as catalog_actions
from carepool.catalog import service as catalog_service
from carepool.core import auth, migrate
from carepool.core.auth import Role
from carepool.core.db import make_engine, make_session_factory
from carepool.core.errors import Conflict
from carepool.core.settings import get_settings
from carepool.core.time import utcnow
from carepool.core.users import do_create_user
from carepool.demo import feeds as demo_feeds
from carepool.demo.activity import simulate
from carepool.demo.generator import generate, lead_clinic
from carepool.identity import service as identity_service

__all__ = ["DEMO_USERS", "DemoSummary", "DemoUser", "build_demo", "current_monday"]

# Where a demo user works: the county hospital, the village clinic of Dr Li, or everywhere.
COUNTY_HOSPITAL = "ch"
VILLAGE_CLINIC = "@clinic"


@dataclass(frozen=True)
class DemoUserSpec:
    username: str
    role: Role
    member: str | None  # COUNTY_HOSPITAL, VILLAGE_CLINIC or None (consortium-wide)
    display_name: str
    what_zh: str
    what_en: str


DEMO_USERS: tuple[DemoUserSpec, ...] = (
    DemoUserSpec(
        "admin", Role.CONSORTIUM_ADMIN, None, "医共体管理员 Consortium admin",
        "管理整个医共体的目录和用户", "runs the catalogue and users of the whole consortium",
    ),
    DemoUserSpec(
        "county.it", Role.MEMBER_ADMIN, COUNTY_HOSPITAL, "县医院信息科 County hospital IT",
        "维护县人民医院的目录", "keeps the county hospital's catalogue",
    ),
    DemoUserSpec(
        "bed.manager", Role.BED_MANAGER, COUNTY_HOSPITAL, "床位管理员 Bed manager",
        "跨病区、跨院区安排床位", "assigns beds across wards and campuses",
    ),
    DemoUserSpec(
        "theatre.coord", Role.THEATRE_COORDINATOR, COUNTY_HOSPITAL,
        "手术室协调员 Theatre coordinator",
        "统筹手术间、术者、麻醉和护士", "plans theatres, surgeons, anaesthetists and nurses",
    ),
    DemoUserSpec(
        "lab.coord", Role.LAB_COORDINATOR, COUNTY_HOSPITAL, "检验检查协调员 Lab coordinator",
        "管理检验和检查的号源与配额", "runs the pool of tests and exams with quotas",
    ),
    DemoUserSpec(
        "director", Role.ADMINISTRATOR, COUNTY_HOSPITAL, "院长 Hospital director",
        "查看运营指标和资源短缺", "reads KPIs and resource shortages",
    ),
    DemoUserSpec(
        "data.steward", Role.DATA_STEWARD, COUNTY_HOSPITAL, "数据治理员 Data steward",
        "统一编码、单位和科室名称", "keeps codes, units and department names in line",
    ),
    DemoUserSpec(
        "dr.li", Role.CLINICIAN, VILLAGE_CLINIC, "李医生 Dr Li",
        "村医：预约专家、CT和检验", "village doctor: books specialists, CT and lab tests",
    ),
    DemoUserSpec(
        "clinic.admin", Role.MEMBER_ADMIN, VILLAGE_CLINIC, "卫生室管理员 Clinic admin",
        "维护本村卫生室的目录", "keeps the village clinic's catalogue",
    ),
)  # fmt: skip


ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class DemoUser:
    username: str
    display_name: str
    role: str
    institution_id: str | None
    token: str


@dataclass
class DemoSummary:
    """What `build_demo` left in the database, with a fresh token per demo user.

    `database_url` hides the password; `seconds` is the wall-clock time of the build.
    """

    database_url: str
    seed: int
    start_date: str
    consortium: dict[str, str]
    counts: dict[str, int]
    members: list[dict[str, Any]]
    users: list[DemoUser]
    imported: dict[str, Any]
    users_created: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # What the pool holds after the simulated month (see `ActivitySummary`).
    activity: dict[str, Any] = field(default_factory=dict)
    # The members' feeds ingested, linked and scored (see `carepool.demo.feeds`).
    feeds: dict[str, Any] = field(default_factory=dict)
    # A patient of Dr Li's clinic whom the county hospital knows too (results there): the
    # README tour books a CT for them and reads their results from the county side.
    tour_patient: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def current_monday(tz: str | None = None) -> date:
    """The Monday of the current week in the consortium's time zone (reads the clock)."""
    today = datetime.now(ZoneInfo(tz or get_settings().timezone)).date()
    return today - timedelta(days=today.weekday())


def _member_counts(doc: dict[str, Any]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str]] = Counter(
        (r["institution_id"], r["kind"]) for r in doc["resources"]
    )
    return [
        {
            "id": i["id"],
            "name": i["name"],
            "name_zh": i["name_zh"],
            "kind": i["kind"],
            "grade": i["grade"],
            "parent_id": i["parent_id"],
            "beds": counts[(i["id"], "bed")],
            "theatres": counts[(i["id"], "theatre")],
            "modalities": counts[(i["id"], "modality")],
            "staff": counts[(i["id"], "staff")],
        }
        for i in doc["institutions"]
    ]


def _check_same_catalogue(session: Session, doc: dict[str, Any]) -> None:
    ours = {i["id"] for i in doc["institutions"]}
    found, _total = catalog_service.get_all(session, kind="institution", limit=100_000)
    foreign = sorted(i.id for i in found if i.id not in ours)
    if foreign:
        raise Conflict(
            f"the database already holds another catalogue ({len(foreign)} member(s) that this "
            f"demo does not have, e.g. {', '.join(foreign[:3])}); build the demo into a fresh "
            "database (--db) or use the seed it was built with"
        )


def _import(
    session: Session, doc: dict[str, Any], progress: ProgressFn | None
) -> catalog_actions.ImportSummary:
    def report(done: int, total: int) -> None:
        if progress:
            progress("import", done, total)

    summary = catalog_actions.do_import_catalog(
        session,
        actor=auth.Principal.system_actor("demo"),
        raw=doc,
        source="demo",
        on_progress=report,
    )
    return summary


def build_demo(
    db_url: str,
    seed: int,
    *,
    start_date: date | None = None,
    token_ttl: timedelta | None = None,
    progress: ProgressFn | None = None,
    now: datetime | None = None,
) -> DemoSummary:
    """Migrate `db_url`, import the demo for `seed`, create the demo users, issue tokens and
    simulate two weeks of history and two weeks of bookings around `now` (default: the clock).

    One transaction: on any error nothing is written. Rosters start on the Monday of
    `start_date` (default: this week's); no activity is simulated before them. Stages reported
    to `progress`: migrate, generate, import, users, tokens, activity, feeds, linking, quality.
    The members' feeds are ingested after that transaction (skipped when an ingest run exists).
    """
    began = time.perf_counter()
    step = progress or (lambda _stage, _done, _total: None)
    start = start_date or current_monday()
    ttl = token_ttl or timedelta(hours=get_settings().token_ttl_hours)

    step("migrate", 0, 1)
    migrate.upgrade(db_url)
    step("migrate", 1, 1)
    step("generate", 0, 1)
    doc = generate(seed, start)
    step("generate", 1, 1)
    clinic = lead_clinic(doc)
    where = {COUNTY_HOSPITAL: COUNTY_HOSPITAL, VILLAGE_CLINIC: clinic, None: None}

    clock = now or utcnow()
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            _check_same_catalogue(session, doc)
            imported = _import(session, doc, progress)
            step("users", 0, len(DEMO_USERS))
            created = []
            for n, spec in enumerate(DEMO_USERS, 1):
                if session.get(auth.User, spec.username) is None:
                    do_create_user(
                        session,
                        actor=auth.Principal.system_actor("demo"),
                        username=spec.username,
                        display_name=_display_name(doc, spec, clinic),
                        role=spec.role,
                        institution_id=where[spec.member],
                        source="demo",
                    )
                    created.append(spec.username)
                step("users", n, len(DEMO_USERS))
            users = []
            for n, spec in enumerate(DEMO_USERS, 1):
                user = auth.get_user(session, username=spec.username)
                token = auth.issue_token(session, username=spec.username, ttl=ttl)
                users.append(
                    DemoUser(
                        username=user.username,
                        display_name=user.display_name,
                        role=user.role.value,
                        institution_id=user.institution_id,
                        token=token,
                    )
                )
                step("tokens", n, len(DEMO_USERS))
            monday = start - timedelta(days=start.weekday())
            rosters_from = datetime(
                monday.year,
                monday.month,
                monday.day,
                tzinfo=ZoneInfo(doc["consortium"]["timezone"]),
            )
            activity = simulate(
                session,
                seed=seed,
                start=rosters_from,
                now=clock,
                progress=progress,
            )
            counts = catalog_service.counts(session)
        # The members' clinical feeds, linked and scored (their own transactions, after the above).
        feeds = demo_feeds.ingest_demo_feeds(
            make_session_factory(engine), seed, doc=doc, now=clock, progress=progress
        )
        with make_session_factory(engine)() as session:
            shared = identity_service.records_shared_with(
                session, institution_id=clinic, other_institution_id=COUNTY_HOSPITAL
            )
    finally:
        engine.dispose()
    return DemoSummary(
        database_url=make_url(db_url).render_as_string(hide_password=True),
        seed=seed,
        start_date=start.isoformat(),
        consortium={
            "id": doc["consortium"]["id"],
            "name": doc["consortium"]["name"],
            "name_zh": doc["consortium"]["name_zh"],
        },
        counts=counts,
        members=_member_counts(doc),
        users=users,
        imported=imported.as_dict(),
        users_created=created,
        seconds=round(time.perf_counter() - began, 2),
        activity=activity.as_dict(),
        feeds=feeds,
        tour_patient=shared[0] if shared else None,
    )


def _display_name(doc: dict[str, Any], spec: DemoUserSpec, clinic: str) -> str:
    """Dr Li carries the name of the village doctor on the clinic's roster."""
    if spec.username != "dr.li":
        return spec.display_name
    doctor = next(
        r
        for r in doc["resources"]
        if r["institution_id"] == clinic and r.get("role") == "physician"
    )
    return f"{doctor['name_zh']}医生 Dr {doctor['name']}"
