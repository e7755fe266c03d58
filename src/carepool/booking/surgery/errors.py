"""Typed refusals of surgery scheduling; each names who or what is not available, and when.

Conflict (409)
├── NotOnDuty              a named theatre has no session, or a named team member is off duty
└── SlotTaken
    ├── TeamMemberBusy     the theatre or a named team member is already claimed at that time
    └── TeamUnavailable    nobody free can fill a role the procedure needs
"""

from __future__ import annotations

from carepool.booking.errors import SlotTaken
from carepool.core.errors import Conflict


class NotOnDuty(Conflict):
    code = "not-on-duty"


class TeamMemberBusy(SlotTaken):
    code = "team-member-busy"


class TeamUnavailable(SlotTaken):
    code = "team-unavailable"
