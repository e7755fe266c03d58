"""join the records (conflicts, flags, history), identity (record facts) and booking
(registered patients, patient time) branches

Revision ID: 0016
Revises: 0013, 0014, 0015
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0016"
down_revision: str | Sequence[str] | None = ("0013", "0014", "0015")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
