"""Typed refusals of referrals and orders (the booking pool's own errors live one level up)."""

from __future__ import annotations

from carepool.core.errors import Conflict


class ChangedConcurrently(Conflict):
    """Someone else changed the referral or order between our read and our write; reload."""

    code = "changed-concurrently"
