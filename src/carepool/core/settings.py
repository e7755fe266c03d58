"""Settings from the environment (`CAREPOOL_*`), with an embedded SQLite default."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./carepool.db"


class Settings(BaseSettings):
    """Process-wide settings. Every value can be set as `CAREPOOL_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="CAREPOOL_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    # The consortium's local time zone: calendars are written in it, everything is stored in UTC.
    timezone: str = "Asia/Shanghai"
    # Bearer tokens: the lifetime given when none is asked for, and the longest one allowed.
    token_ttl_hours: int = 24 * 30
    token_max_ttl_hours: int = 24 * 90
    # The largest request body the API accepts (413 beyond): ingest uploads are the big ones.
    max_request_bytes: int = 64 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    demo_seed: int = 20261128
    # Connections per process to a database server (`CAREPOOL_DB_POOL_SIZE`, `..._MAX_OVERFLOW`).
    # Transactions in flight beyond what the database's cores can run only queue inside it
    # (WAL and lock waits, context switches) and stretch every request's latency; past the pool a
    # request waits for a connection instead. Measured with 2 API workers on a 2-core machine
    # (docs/benchmarks.md, booking): 4 per worker gave the most bookings/s at 32 clients and a
    # short p99; 30 per worker, a p99 of seconds. Raise it with the database's cores.
    db_pool_size: int = 4
    db_max_overflow: int = 0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings read once from the environment."""
    return Settings()
