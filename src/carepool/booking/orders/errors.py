"""Typed refusals of orders."""

from __future__ import annotations

from carepool.core.errors import Conflict


class NoCapacity(Conflict):
    """No member offering the service has a free slot within the order's horizon."""

    code = "no-capacity"
