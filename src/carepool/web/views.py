"""Server-rendered pages: the landing page `/` and the static files it uses.

The landing page shows what the catalogue holds (members, beds, theatres, modalities, staff,
wards) and how to sign in, in Simplified Chinese (default) or English (`?lang=en`). It reads
the database only through catalogue and user service functions and never shows a token.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from carepool import __version__
from carepool.api.deps import DbSession
from carepool.catalog import service as catalog_service
from carepool.catalog.codes import RESOURCE_TYPES
from carepool.core import auth
from carepool.demo.build import DEMO_USERS

router = APIRouter(include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=WEB_DIR / "templates")

LANGUAGES = ("zh", "en")
ALL = 1_000_000  # "every row" for catalogue lists

# Interface strings. Keys are what the templates use; every key exists in both languages.
STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "carepool 医共体资源中台",
        "tagline": "一个资源池：可预约、可规划、可度量",
        "switch": "English",
        "members": "成员单位",
        "campuses": "院区",
        "beds": "床位",
        "beds_in_service": "在用床位",
        "theatres": "手术间",
        "modalities": "影像设备",
        "staff": "人员",
        "services": "服务项目",
        "wards": "病区",
        "n_beds": "张床",
        "n_ward": "个病区",
        "n_wards": "个病区",
        "bed_types": "床位类型",
        "overview": "资源概况",
        "members_by_kind": "成员单位",
        "name": "名称",
        "grade": "等级",
        "led_by": "牵头单位",
        "ward": "病区",
        "campus": "院区",
        "kind": "类型",
        "floor": "位置",
        "closed": "停用",
        "wards_and_beds": "病区与床位",
        "sign_in": "如何登录",
        "nav_sign_in": "登录方式",
        "sign_in_text": "API 使用 Bearer 令牌。用下面的命令为用户签发令牌（令牌不会显示在本页）：",
        "user": "用户名",
        "role": "角色",
        "member": "所属单位",
        "what": "用途",
        "no_demo_users": "还没有演示用户。用 carepool demo 建立演示环境，"
        "或用 carepool auth add-user 创建用户。",
        "then": "然后调用 API，例如查询床位：",
        "links": "链接",
        "docs": "API 文档",
        "fhir": "FHIR 能力声明",
        "health": "健康检查",
        "empty": "目录还是空的。运行 carepool demo 生成演示医共体，"
        "或用 carepool catalog import 导入目录文件。",
        "consortium_wide": "医共体",
        "in_service_of": "在用 / 总数",
        "closed_note": "红色数字：在用床位 / 总床位（有停用床位的病区）。",
    },
    "en": {
        "title": "carepool — the consortium's resource pool",
        "tagline": "One pool of resources to book, plan and measure",
        "switch": "中文",
        "members": "Members",
        "campuses": "Campuses",
        "beds": "Beds",
        "beds_in_service": "Beds in service",
        "theatres": "Theatres",
        "modalities": "Imaging",
        "staff": "Staff",
        "services": "Services",
        "wards": "Wards",
        "n_beds": "beds",
        "n_ward": "ward",
        "n_wards": "wards",
        "bed_types": "Bed types",
        "overview": "What is there",
        "members_by_kind": "Members",
        "name": "Name",
        "grade": "Grade",
        "led_by": "Led by",
        "ward": "Ward",
        "campus": "Campus",
        "kind": "Kind",
        "floor": "Where",
        "closed": "Closed",
        "wards_and_beds": "Wards and beds",
        "sign_in": "How to sign in",
        "nav_sign_in": "Sign in",
        "sign_in_text": "The API takes bearer tokens. Issue one for a user with this command "
        "(this page never shows tokens):",
        "user": "User",
        "role": "Role",
        "member": "Member",
        "what": "What for",
        "no_demo_users": "No demo users yet. Run carepool demo to build the demo, or create "
        "users with carepool auth add-user.",
        "then": "Then call the API, for example to list beds:",
        "links": "Links",
        "docs": "API documentation",
        "fhir": "FHIR capability statement",
        "health": "Health check",
        "empty": "The catalogue is empty. Run carepool demo for the demo consortium, or load "
        "a catalogue document with carepool catalog import.",
        "consortium_wide": "consortium",
        "in_service_of": "in service / all",
        "closed_note": "Red: beds in service / all beds, where some beds are closed.",
    },
}

KIND_LABELS = {
    "general_hospital": ("县级医院", "County hospital"),
    "branch_hospital": ("分院", "Branch hospitals"),
    "township_health_centre": ("乡镇卫生院", "Township health centres"),
    "village_clinic": ("村卫生室", "Village clinics"),
}
GRADE_LABELS = {
    "3A": ("三级甲等", "Grade 3A"),
    "3B": ("三级乙等", "Grade 3B"),
    "2A": ("二级甲等", "Grade 2A"),
    "2B": ("二级乙等", "Grade 2B"),
    "1": ("一级", "Grade 1"),
    "unrated": ("未定级", "unrated"),
}
WARD_KIND_LABELS = {
    "general": ("普通病区", "general"),
    "icu": ("重症监护", "intensive care"),
    "day_surgery": ("日间手术", "day surgery"),
    "emergency": ("急诊留观", "emergency observation"),
    "outpatient": ("门诊", "outpatient"),
    "theatre_suite": ("手术部", "theatre suite"),
    "imaging": ("影像", "imaging"),
    "laboratory": ("检验", "laboratory"),
}
ROLE_LABELS = {
    "consortium_admin": ("医共体管理员", "consortium admin"),
    "member_admin": ("成员单位管理员", "member admin"),
    "clinician": ("临床医生", "clinician"),
    "bed_manager": ("床位管理员", "bed manager"),
    "theatre_coordinator": ("手术室协调员", "theatre coordinator"),
    "lab_coordinator": ("检验检查协调员", "lab coordinator"),
    "administrator": ("医院管理者", "administrator"),
    "data_steward": ("数据治理员", "data steward"),
    "viewer": ("只读用户", "viewer"),
}


def _where(building: str, floor: str, lang: str) -> str:
    """Where a ward is: "A座 5楼" / "block A, floor 5" ("1号楼" / "building 1" for numbers)."""
    if lang == "zh":
        parts = [(f"{building}号楼" if building.isdigit() else f"{building}座") if building else ""]
        parts.append(f"{floor}楼" if floor else "")
        return " ".join(p for p in parts if p)
    parts = [
        (f"building {building}" if building.isdigit() else f"block {building}") if building else ""
    ]
    parts.append(f"floor {floor}" if floor else "")
    return ", ".join(p for p in parts if p)


def _type_label(code: str) -> tuple[str, str]:
    en, zh = RESOURCE_TYPES.get(code.split(".", 1)[0], {}).get(code, (code, code))
    return zh, en


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def _names(obj: Any, lang: str, zh_attr: str = "name_zh", en_attr: str = "name") -> tuple[str, str]:
    """(main, other): the name in the page's language first, the other one beside it."""
    zh, en = getattr(obj, zh_attr) or getattr(obj, en_attr), getattr(obj, en_attr)
    return (zh, en) if lang == "zh" else (en, zh)


@dataclass
class MemberRow:
    id: str
    name: str
    other_name: str
    grade: str
    parent: str
    campuses: int
    counts: dict[str, int]


@dataclass
class WardRow:
    id: str
    name: str
    other_name: str
    campus: str
    kind: str
    where: str
    beds: int
    in_service: int


@dataclass
class MemberGroup:
    kind: str
    label: str
    rows: list[MemberRow] = field(default_factory=list)


def _all(session: Session, entity: str, filters: dict[str, Any] | None = None) -> list[Any]:
    items, _total = catalog_service.get_all(session, kind=entity, filters=filters, limit=ALL)
    return items


def landing_context(session: Session, lang: str) -> dict[str, Any]:
    """Everything the landing page shows, read through the catalogue's service functions."""
    consortia = _all(session, "consortium")
    counts = catalog_service.counts(session)
    institutions = _all(session, "institution")
    by_id = {i.id: i for i in institutions}
    campuses = _all(session, "campus")
    campus_names = {c.id: _names(c, lang)[0] for c in campuses}
    per_member: Counter[tuple[str, str]] = Counter()
    beds_per_ward: Counter[str] = Counter()
    beds_in_service_per_ward: Counter[str] = Counter()
    bed_types: Counter[str] = Counter()
    for kind in ("bed", "theatre", "modality", "staff"):
        for r in _all(session, "resource", {"kind": kind}):
            per_member[(r.institution_id, kind)] += 1
            if kind == "bed":
                bed_types[r.type_code] += 1
            if kind == "bed" and r.ward_id:
                beds_per_ward[r.ward_id] += 1
                beds_in_service_per_ward[r.ward_id] += r.status.value == "in_service"
    campus_count = Counter(c.institution_id for c in campuses)

    groups = {k: MemberGroup(k, _pick(v, lang)) for k, v in KIND_LABELS.items()}
    for inst in institutions:
        name, other = _names(inst, lang)
        parent = by_id.get(inst.parent_id) if inst.parent_id else None
        groups.setdefault(inst.kind.value, MemberGroup(inst.kind.value, inst.kind.value))
        groups[inst.kind.value].rows.append(
            MemberRow(
                id=inst.id,
                name=name,
                other_name=other,
                grade=_pick(GRADE_LABELS.get(inst.grade.value, (inst.grade, inst.grade)), lang),
                parent=_names(parent, lang)[0] if parent else "",
                campuses=campus_count[inst.id],
                counts={
                    k: per_member[(inst.id, k)] for k in ("bed", "theatre", "modality", "staff")
                },
            )
        )

    wards_by_member: dict[str, list[tuple[tuple[str, int, str], WardRow]]] = {}
    departments = {d.id: d for d in _all(session, "department")}
    campus_order = {c.id: i for i, c in enumerate(campuses)}
    for ward in _all(session, "ward"):
        name, other = _names(ward, lang)
        dept = departments.get(ward.department_id)
        campus_id = dept.campus_id if dept else ""
        row = WardRow(
            id=ward.id,
            name=name,
            other_name=other,
            campus=campus_names.get(campus_id, ""),
            kind=_pick(WARD_KIND_LABELS.get(ward.kind.value, (ward.kind, ward.kind)), lang),
            where=_where(ward.building, ward.floor, lang),
            beds=beds_per_ward[ward.id],
            in_service=beds_in_service_per_ward[ward.id],
        )
        order = (campus_id, campus_order.get(campus_id, 0), f"{ward.building}{ward.floor:>4}")
        wards_by_member.setdefault(ward.institution_id, []).append((order, row))
    ward_groups = []
    for inst in institutions:
        rows = [row for _order, row in sorted(wards_by_member.get(inst.id, []), key=lambda x: x[0])]
        if not rows:
            continue
        by_campus: dict[str, list[WardRow]] = {}
        for row in rows:
            by_campus.setdefault(row.campus, []).append(row)
        ward_groups.append(
            {
                "id": inst.id,
                "name": _names(inst, lang)[0],
                "beds": sum(r.beds for r in rows),
                "wards": len(rows),
                "campuses": [
                    {"name": c, "beds": sum(r.beds for r in ws), "wards": ws}
                    for c, ws in by_campus.items()
                ],
            }
        )
    ward_groups.sort(key=lambda g: (-g["beds"], g["id"]))

    demo_names = {spec.username: spec for spec in DEMO_USERS}
    users = []
    for user in auth.get_all_users(session):
        spec = demo_names.get(user.username)
        if spec is None or not user.active:
            continue
        member = by_id.get(user.institution_id) if user.institution_id else None
        users.append(
            {
                "username": user.username,
                "display_name": user.display_name,
                "role": _pick(ROLE_LABELS.get(user.role.value, (user.role, user.role)), lang),
                "member": _names(member, lang)[0] if member else STRINGS[lang]["consortium_wide"],
                "what": spec.what_zh if lang == "zh" else spec.what_en,
            }
        )
    users.sort(key=lambda u: [s.username for s in DEMO_USERS].index(u["username"]))

    beds_in_service = sum(beds_in_service_per_ward.values())
    consortium = consortia[0] if consortia else None
    return {
        "consortium": consortium,
        "consortium_name": _names(consortium, lang) if consortium else ("carepool", ""),
        "totals": {
            "institution": counts.get("institution", 0),
            "campus": counts.get("campus", 0),
            "bed": counts.get("resource.bed", 0),
            "bed_in_service": beds_in_service,
            "theatre": counts.get("resource.theatre", 0),
            "modality": counts.get("resource.modality", 0),
            "staff": counts.get("resource.staff", 0),
            "service": counts.get("service", 0),
            "ward": counts.get("ward", 0),
        },
        "bed_types": [
            (_pick(_type_label(code), lang), n)
            for code, n in sorted(bed_types.items(), key=lambda x: (-x[1], x[0]))
        ],
        "groups": [g for g in groups.values() if g.rows],
        "ward_groups": ward_groups,
        "users": users,
    }


@router.get("/", response_class=HTMLResponse)
def landing(
    request: Request,
    session: DbSession,
    lang: str = Query("zh", description="Page language: zh or en"),
) -> HTMLResponse:
    """The landing page: the consortium at a glance and how to sign in."""
    lang = lang if lang in LANGUAGES else "zh"
    context = landing_context(session, lang)
    base = str(request.base_url).rstrip("/")
    return templates.TemplateResponse(
        request,
        "landing.html",
        {
            **context,
            "lang": lang,
            "other_lang": "en" if lang == "zh" else "zh",
            "t": STRINGS[lang],
            "base_url": base,
            "token_user": _token_user(context["users"]),
            "version": __version__,
        },
    )


def _token_user(users: list[dict[str, Any]]) -> str:
    """The user the page's examples use: the bed manager when there is one."""
    names = [u["username"] for u in users]
    return "bed.manager" if "bed.manager" in names else (names[0] if names else "NAME")


@router.get("/static/{path:path}")
def static(path: str) -> FileResponse:
    """A file of `web/static`; anything outside that folder is not found."""
    target = (STATIC_DIR / path).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise HTTPException(status_code=404, detail=f"no static file {path!r}")
    return FileResponse(target, headers={"Cache-Control": "public, max-age=3600"})
