"""The FastAPI application: routers of every context, error mapping, one engine per process."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

from carepool import __version__
from carepool.api import admin, fhir, problems, security
from carepool.booking import views as booking_views
from carepool.booking.inpatient import views as inpatient_views
from carepool.booking.referrals import views as referral_views
from carepool.booking.surgery import views as surgery_views
from carepool.catalog import views as catalog_views
from carepool.core.db import make_engine, make_session_factory
from carepool.core.settings import get_settings
from carepool.core.time import Clock, SystemClock
from carepool.identity import views as identity_views
from carepool.ingest import views as ingest_views
from carepool.quality import views as quality_views
from carepool.terminology import views as terminology_views
from carepool.web import views as web_views

# The first generation's threshold while serving (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000
_heap_settled = False


def settle_heap() -> None:
    """Keep the garbage collector's full collections short while serving (once per process).

    After start-up the process holds a few hundred thousand long-lived objects (FastAPI, the
    SQLAlchemy mappers, pydantic and FHIR model classes); every full collection walked them all,
    a pause of a quarter of a second now and then in the middle of a request. Frozen, they are
    never walked again; requests' own garbage is still collected, the first generation a little
    less often (`GC_YOUNG_THRESHOLD`). A large ingest run in the process unfreezes everything
    when it ends (`ingest.actions._fewer_collections`).
    """
    global _heap_settled
    if _heap_settled:
        return
    _heap_settled = True
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    settle_heap()
    yield
    if _app.state.audit_engine is not _app.state.engine:
        _app.state.audit_engine.dispose()


# The refusal audit's own connections per process (at most 2 + 2; each write takes ~1 ms).
AUDIT_POOL: dict[str, int] = {"pool_size": 2, "max_overflow": 2}


def create_app(database_url: str | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the app over `database_url` (default: settings). The schema must be migrated."""
    url = database_url or get_settings().database_url
    engine = make_engine(url)
    # Swagger UI and ReDoc from carepool itself (fastapi-offline ships their assets): a
    # hospital network has no internet, and the default pages load them from a CDN.
    app = FastAPIOffline(
        title="carepool",
        version=__version__,
        description=(
            "Hospital middle platform for a medical consortium: the Product Capability Center "
            "(catalogue), bookings, planning and the data middle platform. Errors are RFC 9457 "
            "problem documents; FHIR R4 lives under /fhir."
        ),
        lifespan=_lifespan,
    )
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    # Refusals are audited in transactions of their own, over connections of their own
    # (`api.problems`); on SQLite one file lock serialises every writer anyway.
    audit_engine = engine if url.startswith("sqlite") else make_engine(url, **AUDIT_POOL)
    app.state.audit_engine = audit_engine
    app.state.audit_sessions = make_session_factory(audit_engine)
    app.state.clock = clock or SystemClock()
    app.state.fhir_base_urls = {}  # api.fhir._base_url
    problems.install(app)

    @app.get("/health", tags=["platform"])
    def health() -> dict[str, Any]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__, "database": engine.dialect.name}

    app.include_router(admin.router, prefix="/api/v1")
    app.include_router(catalog_views.router, prefix="/api/v1")
    app.include_router(booking_views.router, prefix="/api/v1")
    app.include_router(inpatient_views.router, prefix="/api/v1")
    app.include_router(surgery_views.router, prefix="/api/v1")
    app.include_router(referral_views.routes, prefix="/api/v1")
    app.include_router(ingest_views.router, prefix="/api/v1")
    app.include_router(terminology_views.router, prefix="/api/v1")
    app.include_router(quality_views.router, prefix="/api/v1")
    app.include_router(identity_views.router, prefix="/api/v1")
    app.include_router(fhir.router, prefix="/fhir")
    app.include_router(web_views.router)
    security.declare_bearer_scheme(app)
    app.add_middleware(security.SecurityHeaders, max_body_bytes=get_settings().max_request_bytes)
    return app
