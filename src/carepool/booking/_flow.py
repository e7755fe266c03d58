"""State-machine steps shared by the booking flows (appointments, referrals, orders)."""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import datetime
from typing import Any

from carepool.booking.errors import InvalidTransition
from carepool.core.auth import Principal


def require_status(
    kind: str, ident: str, status: enum.Enum, allowed: Collection[enum.Enum], action: str
) -> None:
    """Refuse `action` unless the entry is in one of the `allowed` states (409, saying which)."""
    if status not in allowed:
        raise InvalidTransition(
            f"{kind} {ident} is {status.value}; '{action}' needs "
            f"{' or '.join(sorted(s.value for s in allowed))}"
        )


def advance(
    row: Any, target: enum.Enum, *, actor: Principal, now: datetime, note: str, **changes: Any
) -> None:
    """Move a flow entry to `target`, set `changes`, and append the step to its history."""
    for name, value in changes.items():
        setattr(row, name, value)
    row.status = target
    row.updated_at = now
    step = {"status": target.value, "at": now.isoformat(), "by": actor.username, "note": note}
    row.history = [*row.history, step]
