"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The consortium's shared data folder (`../shared`); tests that need it skip without it."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"../shared is absent ({SHARED_DIR}); this test uses third-party sample data")
    return SHARED_DIR


@pytest.fixture(scope="session")
def ihtc_dir(shared_dir: Path) -> Path:
    """IHTC-2024 instances, best-known values and reference solutions."""
    path = shared_dir / "benchmarks" / "ihtc2024"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
