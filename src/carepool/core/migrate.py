"""Schema migrations with Alembic, run from the installed package (`carepool db upgrade`)."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from carepool.core.db import Base, make_engine

# Every module that declares tables; Alembic's autogenerate and the checks below see them all.
MODEL_MODULES = (
    "carepool.core.auth",
    "carepool.core.audit",
    "carepool.core.events",
    "carepool.catalog.models",
    "carepool.booking.models",
    "carepool.booking.inpatient.models",
    "carepool.booking.surgery.models",
    "carepool.booking.referrals.models",
    "carepool.booking.orders.models",
    "carepool.records.models",
    "carepool.terminology.models",
    "carepool.ingest.models",
    "carepool.identity.models",
    "carepool.records.consent.models",
    "carepool.quality.models",
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def load_models() -> type[Base]:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at `url` to `revision` (default: every head; creates SQLite files).

    Contexts developed side by side may add migrations on parallel branches; "heads" applies
    them all, and a merge revision joins them before a release.
    """
    command.upgrade(alembic_config(url), revision)


def current_revisions(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def head_revisions(url: str) -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(alembic_config(url)).get_heads()))


def is_up_to_date(url: str) -> bool:
    engine = make_engine(url)
    try:
        return current_revisions(engine) == head_revisions(url)
    finally:
        engine.dispose()
