"""The landing page: what the catalogue holds, in Chinese and English, and how to sign in."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from carepool.api.app import create_app
from carepool.catalog import service as catalog_service
from carepool.catalog.actions import do_import_catalog
from carepool.core import auth
from carepool.core.auth import Principal
from carepool.demo.build import DEMO_USERS, DemoSummary, build_demo
from tests.factories import small_catalog

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _totals(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'data-total="(\w+)">(\d+)<', html)}


def _member_rows(html: str) -> dict[str, dict[str, int]]:
    rows = re.findall(r'<tr data-member="([^"]+)">(.*?)</tr>', html, re.S)
    return {
        member: {k: int(v) for k, v in re.findall(r'data-count="(\w+)">(\d+)<', body)}
        for member, body in rows
    }


def _ward_beds(html: str) -> dict[str, int]:
    rows = re.findall(r'<tr data-ward="([^"]+)">.*?data-beds="(\d+)"', html, re.S)
    return {ward: int(n) for ward, n in rows}


def _expected(session: Session) -> dict[str, Any]:
    """What the page should say, counted from the database."""
    resources, _ = catalog_service.get_all(session, kind="resource", limit=100_000)
    per_member = Counter((r.institution_id, r.kind.value) for r in resources)
    institutions, _ = catalog_service.get_all(session, kind="institution", limit=10_000)
    wards, _ = catalog_service.get_all(session, kind="ward", limit=10_000)
    return {
        "counts": catalog_service.counts(session),
        "in_service": sum(
            r.kind.value == "bed" and r.status.value == "in_service" for r in resources
        ),
        "members": {
            i.id: {k: per_member[(i.id, k)] for k in ("bed", "theatre", "modality", "staff")}
            for i in institutions
        },
        "wards": {w.id: sum(r.ward_id == w.id and r.kind.value == "bed" for r in resources)
                  for w in wards},
    }  # fmt: skip


def _assert_counts_match(html: str, expected: dict[str, Any]) -> None:
    counts = expected["counts"]
    assert _totals(html) == {
        "institution": counts["institution"],
        "campus": counts["campus"],
        "bed": counts.get("resource.bed", 0),
        "bed_in_service": expected["in_service"],
        "ward": counts["ward"],
        "theatre": counts.get("resource.theatre", 0),
        "modality": counts.get("resource.modality", 0),
        "staff": counts.get("resource.staff", 0),
        "service": counts["service"],
    }
    assert _member_rows(html) == expected["members"]
    assert _ward_beds(html) == expected["wards"]


# -- through the app, on both databases ------------------------------------------------------------


def test_empty_catalogue_says_how_to_fill_it(client: TestClient) -> None:
    zh = client.get("/")
    assert zh.status_code == 200 and zh.headers["content-type"].startswith("text/html")
    assert '<html lang="zh-CN">' in zh.text
    assert "目录还是空的" in zh.text and "carepool demo" in zh.text
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text
    assert "The catalogue is empty" in en.text and "目录还是空的" not in en.text


def test_counts_match_the_database_in_both_languages(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    doc = small_catalog()
    doc["resources"][2]["status"] = "closed"  # one of the two beds of the cardiology ward
    with sessions() as session, session.begin():
        do_import_catalog(session, actor=Principal.system_actor("test"), raw=doc)
        auth.create_user(
            session,
            username="admin",
            display_name="Admin",
            role=auth.Role.CONSORTIUM_ADMIN,
            institution_id=None,
        )
        auth.create_user(
            session,
            username="bed.manager",
            display_name="床位管理员 Bed manager",
            role=auth.Role.BED_MANAGER,
            institution_id="hosp",
        )
        auth.create_user(
            session,
            username="someone.else",
            display_name="Not a demo user",
            role=auth.Role.VIEWER,
            institution_id="hosp",
        )
        token = auth.issue_token(session, username="bed.manager", ttl=timedelta(hours=1))
    with sessions() as session:
        expected = _expected(session)
    assert expected["in_service"] == 1  # the closed bed is not in service

    zh = client.get("/").text
    _assert_counts_match(zh, expected)
    assert '<h1 id="consortium-name">测试县医共体</h1>' in zh
    assert "县人民医院" in zh and "心内一病区" in zh and "床位管理员" in zh
    assert '<span class="closed" title="停用">1 / </span>2' in zh

    en = client.get("/?lang=en").text
    _assert_counts_match(en, expected)
    assert '<h1 id="consortium-name">Test County Consortium</h1>' in en
    assert "County People&#39;s Hospital" in en and "Cardiology ward 1" in en
    assert "How to sign in" in en and "bed manager" in en

    for page in (zh, en):
        assert 'data-user="bed.manager"' in page and 'data-user="admin"' in page
        assert "someone.else" not in page  # only the demo accounts are advertised
        assert token not in page and "cpt_" not in page
        assert "carepool auth token --user bed.manager" in page
        assert "/api/v1/resources?kind=bed" in page


def test_language_switch_and_fallback(client: TestClient) -> None:
    zh = client.get("/").text
    assert 'id="lang-switch" href="?lang=en"' in zh
    en = client.get("/?lang=en").text
    assert 'id="lang-switch" href="?lang=zh"' in en
    assert client.get("/?lang=fr").text == zh


def test_links_to_docs_fhir_and_health_work(client: TestClient) -> None:
    page = client.get("/?lang=en").text
    for path in ("/docs", "/fhir/metadata", "/health"):
        assert f'href="{path}"' in page
        assert client.get(path).status_code == 200, path


def test_static_files_are_served_and_confined_to_their_folder(client: TestClient) -> None:
    css = client.get("/static/carepool.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "font-family" in css.text
    assert client.get("/static/favicon.svg").headers["content-type"] == "image/svg+xml"
    for sneaky in ("/static/%2e%2e/views.py", "/static/..%2fviews.py", "/static//etc/passwd"):
        assert client.get(sneaky).status_code == 404, sneaky
    assert client.get("/static/nothing-here.css").status_code == 404


# -- the demo, once, on SQLite ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, DemoSummary]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    return url, build_demo(url, 11, start_date=date(2026, 11, 30))


@pytest.mark.slow
def test_demo_landing_page_matches_its_database(demo_db: tuple[str, DemoSummary]) -> None:
    url, summary = demo_db
    app = create_app(url)
    try:
        with TestClient(app) as client:
            html = client.get("/").text
        with app.state.sessions() as session:
            expected = _expected(session)
    finally:
        app.state.engine.dispose()
    _assert_counts_match(html, expected)
    assert len(_member_rows(html)) == len(summary.members)
    assert all(f'data-user="{spec.username}"' in html for spec in DEMO_USERS)
    assert not any(u.token in html for u in summary.users)


@pytest.fixture()
def live_server(demo_db: tuple[str, DemoSummary]) -> Iterator[str]:
    """The app under a real uvicorn on a free localhost port, in a thread."""
    import uvicorn

    app = create_app(demo_db[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app.state.engine.dispose()


@pytest.mark.slow
def test_in_a_real_browser_the_page_reads_and_switches_language(
    demo_db: tuple[str, DemoSummary], live_server: str, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium (make browser)")
    sync_api = pytest.importorskip("playwright.sync_api")
    summary = demo_db[1]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(live_server + "/")
            heading = page.locator("#consortium-name")
            assert heading.inner_text() == summary.consortium["name_zh"]
            beds = page.locator('.tiles [data-total="bed"]')
            assert beds.is_visible() and beds.inner_text() == str(summary.counts["resource.bed"])
            assert page.get_by_role("heading", name="如何登录").is_visible()
            page.screenshot(path=tmp_path / "landing-zh.png")

            page.locator("#lang-switch").click()
            page.wait_for_url("**/?lang=en")
            assert heading.inner_text() == summary.consortium["name"]
            assert page.get_by_role("heading", name="How to sign in").is_visible()
            assert page.get_by_role("heading", name="Wards and beds").is_visible()
            village = page.locator('[data-kind="village_clinic"] tbody tr').first
            assert not village.is_visible()  # village clinics start folded
            page.locator('[data-kind="village_clinic"] summary').click()
            assert village.is_visible() and "Village Clinic" in village.inner_text()
            assert "cpt_" not in page.content()
            page.screenshot(path=tmp_path / "landing-en.png", full_page=True)

            page.locator("#lang-switch").click()
            page.wait_for_url("**/?lang=zh")
            assert page.locator("html").get_attribute("lang") == "zh-CN"
        finally:
            browser.close()
