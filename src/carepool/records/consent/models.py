"""The consent table: one row per person who said anything; no row means the default (allow).

Keyed by the master patient index's person id (identity): a consent is the person's, not one
member's record's. Changes are audited (before/after) by the actions; the audit trail is the
history.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carepool.core.db import Base, UtcDateTime, str_enum
from carepool.core.time import utcnow


class Sharing(enum.StrEnum):
    ALLOW = "allow"  # members other than the recording one may see the person's records
    DENY = "deny"  # only the member that holds a record sees it


DEFAULT_SHARING = Sharing.ALLOW


class PersonConsent(Base):
    __tablename__ = "person_consent"

    person_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sharing: Mapped[Sharing] = mapped_column(str_enum(Sharing, 10), nullable=False, index=True)
    # The member where the patient said so (None: recorded consortium-wide).
    institution_id: Mapped[str | None] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(64), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
