"""`carepool demo`: build the demo consortium into a database, show it, then serve it."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from carepool.core.cli import DbOption, JsonOption, fail, print_json, resolve_url
from carepool.core.errors import CarepoolError
from carepool.core.settings import get_settings
from carepool.demo.activity import DAYS_BACK
from carepool.demo.build import DemoSummary, build_demo, current_monday

__all__ = ["demo"]

_STAGES = {
    "migrate": "Migrating the database / 迁移数据库",
    "generate": "Generating the consortium / 生成医共体",
    "import": "Importing the catalogue / 导入目录",
    "users": "Creating demo users / 创建演示用户",
    "tokens": "Issuing tokens / 签发令牌",
    "activity": "Simulating a month of activity / 模拟一个月的业务",
    "feeds": "Ingesting the members' feeds / 接入成员单位数据",
    "linking": "Linking patients across members / 患者主索引匹配",
    "quality": "Scoring data quality / 数据质量评分",
}
_KIND_LABELS = {
    "general_hospital": "County hospital 县医院",
    "branch_hospital": "Branch hospital 分院",
    "township_health_centre": "Township health centre 乡镇卫生院",
    "village_clinic": "Village clinic 村卫生室",
}


def demo(
    db: DbOption = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the generated consortium (default: $CAREPOOL_DEMO_SEED)"),
    ] = None,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Build and report, but do not start the server")
    ] = False,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: 8000)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Build the demo consortium (SQLite ./carepool.db by default), list it, then serve it."""
    settings = get_settings()
    url = resolve_url(db)
    chosen_seed = settings.demo_seed if seed is None else seed
    console = Console(stderr=True)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>5.0f}/{task.total:<5.0f}"),
            console=console,
            transient=as_json,
            disable=as_json and no_serve,
        ) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
                bar.update(tasks[stage], completed=done, total=total)

            # Rosters begin two weeks back, so the simulated fortnight of history had staff on duty.
            rosters_from = current_monday(settings.timezone) - timedelta(days=DAYS_BACK)
            summary = build_demo(url, chosen_seed, start_date=rosters_from, progress=progress)
    except CarepoolError as exc:
        raise fail(exc, as_json=as_json) from exc
    address = f"http://{host or settings.host}:{port or settings.port}"
    if as_json:
        print_json({**summary.as_dict(), "url": address})
    else:
        _report(summary, address, serving=not no_serve)
    if no_serve:
        return
    import uvicorn

    from carepool.api.app import create_app

    uvicorn.run(create_app(url), host=host or settings.host, port=port or settings.port)


def _report(summary: DemoSummary, address: str, *, serving: bool) -> None:
    out = Console(soft_wrap=True)
    c = summary.consortium
    out.print(
        f"\n[bold]{c['name_zh']} · {c['name']}[/]  seed {summary.seed}, rosters from "
        f"{summary.start_date}, built in {summary.seconds:.1f} s\n{summary.database_url}\n"
    )
    counts = summary.counts
    totals = Table(title="What is there / 资源概况", show_header=False)
    for label, key in (
        ("Members 成员单位", "institution"),
        ("Campuses 院区", "campus"),
        ("Departments 科室", "department"),
        ("Wards 病区", "ward"),
        ("Beds 床位", "resource.bed"),
        ("Rooms 房间", "resource.room"),
        ("Operating theatres 手术间", "resource.theatre"),
        ("Imaging modalities 影像设备", "resource.modality"),
        ("Lab sections 检验组", "resource.lab_section"),
        ("Analysers 分析仪", "resource.analyser"),
        ("Staff 人员", "resource.staff"),
        ("Calendar rules 排班/开放规则", "calendar_rule"),
        ("Calendar exceptions 例外", "calendar_exception"),
        ("Services 服务项目", "service"),
    ):
        totals.add_row(label, str(counts.get(key, 0)))
    out.print(totals)

    members = Table(title="Members / 成员单位")
    members.add_column("id", no_wrap=True, min_width=12)
    members.add_column("名称 name", overflow="ellipsis", no_wrap=True)
    for col in ("beds", "OR", "imaging", "staff"):
        members.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    villages = [m for m in summary.members if m["kind"] == "village_clinic"]
    for m in summary.members:
        if m["kind"] != "village_clinic":
            members.add_row(
                m["id"],
                m["name_zh"],
                *(str(m[k]) for k in ("beds", "theatres", "modalities", "staff")),
            )
    if villages:
        members.add_row(
            "vc-*",
            f"{len(villages)} 个村卫生室 village clinics",
            *(
                str(sum(m[k] for m in villages))
                for k in ("beds", "theatres", "modalities", "staff")
            ),
        )
    out.print(members)
    _report_activity(out, summary.activity)
    _report_feeds(out, summary.feeds)

    out.print("\n[bold]Demo users and their tokens / 演示用户与令牌[/]")
    for u in summary.users:
        out.print(
            f"  {u.username:<14} {u.role:<20} {u.institution_id or '(consortium)':<22} {u.token}",
            highlight=False,
        )
    bed_manager = next((u for u in summary.users if u.username == "bed.manager"), summary.users[0])
    if summary.tour_patient:
        out.print(
            f"\nA patient of Dr Li's clinic with results at the county hospital / 李医生的患者: "
            f"Patient/{summary.tour_patient}",
            highlight=False,
        )
    out.print("\nTry / 试一试:")
    out.print(
        f'  curl -H "Authorization: Bearer {bed_manager.token}" '
        f'"{address}/api/v1/resources?kind=bed"',
        highlight=False,
    )
    db_flag = (
        ""
        if summary.database_url == get_settings().database_url
        else (f" --db '{summary.database_url}'")
    )
    out.print(
        f"  carepool auth token --user bed.manager{db_flag}   # a new token / 新令牌",
        highlight=False,
    )
    if serving:
        out.print(f"\nServing / 服务地址: [bold]{address}[/]  (docs: {address}/docs; Ctrl+C stops)")


def _report_activity(out: Console, activity: dict[str, Any]) -> None:
    """The simulated month: what the pool holds, by state."""
    if not activity:
        return
    table = Table(title="A living pool / 业务概况", show_header=False)
    for label, key in (
        ("Appointments 预约", "appointments"),
        ("Referrals 转诊", "referrals"),
        ("Orders 检验检查申请", "orders"),
        ("Admissions 住院", "admissions"),
        ("Surgery cases 手术", "surgery_cases"),
        ("Beds now 床位现状", "beds"),
    ):
        counts = activity.get(key, {})
        states = ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "total")
        table.add_row(label, str(counts.get("total", "")), states)
    occupancy = activity.get("occupancy", {})
    table.add_row(
        "Occupancy 占用率",
        "",
        ", ".join(f"{k} {v:.0%}" for k, v in occupancy.items()),
    )
    out.print(table)
    if not activity.get("simulated", True):
        out.print("(the pool already had activity: nothing was added / 已有业务数据，未重复模拟)")


def _report_feeds(out: Console, feeds: dict[str, Any]) -> None:
    """The members' feeds: what arrived, who was linked, how the members score."""
    if not feeds:
        return
    if not feeds.get("ingested"):
        out.print("(the store already had records: no feeds added / 已有临床数据，未重复接入)")
        return
    t = feeds["totals"]
    ranking = feeds["quality"]["ranking"]
    out.print(
        f"Feeds 数据接入: {feeds['feeds']} files from {len(feeds['members'])} members, "
        f"{t['received']} records ({t['stored']} stored, {t['duplicates']} duplicates, "
        f"{t['rejected']} rejected); {feeds['persons_linked']} patients linked across members; "
        f"quality best {ranking[0] if ranking else '-'}, worst {ranking[-1] if ranking else '-'}",
        highlight=False,
    )
