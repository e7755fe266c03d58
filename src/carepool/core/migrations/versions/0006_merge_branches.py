"""join the booking, flows and data platform branches

Revision ID: 0006
Revises: 0004, 0005, 0100

"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006"
down_revision: str | Sequence[str] | None = ("0004", "0005", "0100")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
