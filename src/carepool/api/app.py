"""The FastAPI application: routers of every context, error mapping, one engine per process."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from carepool import __version__
from carepool.api import admin, fhir, problems
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


def create_app(database_url: str | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the app over `database_url` (default: settings). The schema must be migrated."""
    url = database_url or get_settings().database_url
    engine = make_engine(url)
    app = FastAPI(
        title="carepool",
        version=__version__,
        description=(
            "Hospital middle platform for a medical consortium: the Product Capability Center "
            "(catalogue), bookings, planning and the data middle platform. Errors are RFC 9457 "
            "problem documents; FHIR R4 lives under /fhir."
        ),
    )
    app.state.engine = engine
    app.state.sessions = make_session_factory(engine)
    app.state.clock = clock or SystemClock()
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
    return app
