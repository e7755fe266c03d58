"""Records tests reuse the ingest fixtures (a loaded catalogue and an ingest helper)."""

from tests.ingest.conftest import ingest, members

__all__ = ["ingest", "members"]
