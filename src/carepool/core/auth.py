"""Users, roles, SMART-style scopes, bearer tokens and the caller (`Principal`).

A scope reads `user/<Area>.<read|write>` (`user/*.read` for every area), as in SMART on FHIR.
A token carries the user's scopes and institution at issue time; only a hash is stored.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Boolean, ForeignKey, String, event, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from carepool.core.db import Base, JsonType, UtcDateTime, str_enum
from carepool.core.errors import (
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from carepool.core.settings import get_settings
from carepool.core.time import utcnow

Username = str
InstitutionId = str


class Role(enum.StrEnum):
    CONSORTIUM_ADMIN = "consortium_admin"
    MEMBER_ADMIN = "member_admin"
    CLINICIAN = "clinician"
    BED_MANAGER = "bed_manager"
    THEATRE_COORDINATOR = "theatre_coordinator"
    LAB_COORDINATOR = "lab_coordinator"
    ADMINISTRATOR = "administrator"
    DATA_STEWARD = "data_steward"
    VIEWER = "viewer"


ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.CONSORTIUM_ADMIN: ("user/*.read", "user/*.write"),
    Role.MEMBER_ADMIN: (
        "user/Catalog.read",
        "user/Catalog.write",
        "user/Booking.read",
        "user/Booking.write",
        "user/Audit.read",
        "user/Ingest.read",
        "user/Ingest.write",
        "user/Identity.read",
        "user/Consent.read",
        "user/Consent.write",
    ),
    Role.CLINICIAN: (
        "user/Catalog.read",
        "user/Booking.read",
        "user/Booking.write",
        "user/Patient.read",
        "user/Observation.read",
        "user/Consent.read",
        "user/Consent.write",
    ),
    Role.BED_MANAGER: ("user/Catalog.read", "user/Booking.read", "user/Booking.write"),
    Role.THEATRE_COORDINATOR: ("user/Catalog.read", "user/Booking.read", "user/Booking.write"),
    Role.LAB_COORDINATOR: ("user/Catalog.read", "user/Booking.read", "user/Booking.write"),
    Role.ADMINISTRATOR: (
        "user/Catalog.read",
        "user/Insight.read",
        "user/Booking.read",
        "user/Quality.read",
    ),
    Role.DATA_STEWARD: (
        "user/Catalog.read",
        "user/Terminology.read",
        "user/Terminology.write",
        "user/Ingest.read",
        "user/Ingest.write",
        "user/Quality.read",
        "user/Quality.write",
        "user/Identity.read",
        "user/Identity.write",
    ),
    Role.VIEWER: ("user/Catalog.read",),
}


# Roles that may belong to the consortium itself rather than a member (institution None):
# such a data steward sees and governs every member's data, a member's steward only its own.
CONSORTIUM_ROLES = frozenset({Role.CONSORTIUM_ADMIN, Role.DATA_STEWARD})


class User(Base):
    __tablename__ = "app_user"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[Role] = mapped_column(str_enum(Role, 40), nullable=False)
    # Null only for consortium-wide accounts (consortium administrators).
    institution_id: Mapped[str | None] = mapped_column(
        ForeignKey("institution.id", ondelete="RESTRICT"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False, default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(
        ForeignKey("app_user.username", ondelete="CASCADE"), nullable=False, index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JsonType, nullable=False)
    institution_id: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user with scopes and an institution, or the system itself (CLI, jobs)."""

    username: str
    role: Role | None
    institution_id: InstitutionId | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    system: bool = False

    @classmethod
    def system_actor(cls, name: str = "system") -> Principal:
        return cls(username=name, role=None, institution_id=None, system=True)

    @property
    def consortium_wide(self) -> bool:
        """True for the system, consortium administrators and the consortium's own data
        stewards (a steward of no member): they act for every member, within their scopes."""
        if self.system or self.role == Role.CONSORTIUM_ADMIN:
            return True
        return self.role in CONSORTIUM_ROLES and self.institution_id is None

    def has_scope(self, area: str, access: str) -> bool:
        if self.system:
            return True
        wanted = {f"user/{area}.{access}", f"user/*.{access}", "user/*.*", f"user/{area}.*"}
        return bool(wanted & self.scopes)

    def require_scope(self, area: str, access: str) -> None:
        """Raise `PermissionDenied` unless the caller holds `user/<area>.<access>`."""
        if not self.has_scope(area, access):
            raise PermissionDenied(
                f"this action needs the scope user/{area}.{access}; "
                f"the token of {self.username!r} does not carry it",
                missing_scope=f"user/{area}.{access}",
            )

    def can_act_for(self, institution_id: InstitutionId | None) -> bool:
        return self.consortium_wide or (
            institution_id is not None and institution_id == self.institution_id
        )

    def require_institution(self, institution_id: InstitutionId | None, what: str) -> None:
        """Raise `PermissionDenied` unless the caller may change things of `institution_id`."""
        if not self.can_act_for(institution_id):
            owner = institution_id or "the consortium"
            raise PermissionDenied(
                f"{self.username!r} belongs to {self.institution_id!r} and may not change "
                f"{what}, which belongs to {owner!r}",
                institution=institution_id,
            )


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def get_user(session: Session, *, username: Username) -> User:
    user = session.get(User, username)
    if user is None:
        raise NotFound("user", username)
    return user


def get_all_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def token_id(token_hash: str) -> str:
    """The public name of a token: the first 16 hex digits of its hash (the token itself is
    never stored, so it cannot be shown again; this id can be listed and revoked)."""
    return token_hash[:16]


def token_lifetime(hours: int | None = None) -> timedelta:
    """A token lifetime in hours: the settings' default when None; `InvalidInput` outside
    1..`token_max_ttl_hours` (a zero or negative lifetime is an error, not the default)."""
    settings = get_settings()
    if hours is None:
        hours = settings.token_ttl_hours
    if not 1 <= hours <= settings.token_max_ttl_hours:
        raise InvalidInput(
            f"a token lifetime must be 1 to {settings.token_max_ttl_hours} hours, not {hours}",
            [FieldError("hours", f"between 1 and {settings.token_max_ttl_hours}")],
        )
    return timedelta(hours=hours)


def issue_token(
    session: Session,
    *,
    username: Username,
    ttl: timedelta,
    scopes: list[str] | None = None,
) -> str:
    """Create a bearer token for an existing, active user; `scopes` may only narrow the role's.
    The lifetime must be positive and at most `token_max_ttl_hours` (`InvalidInput`)."""
    longest = timedelta(hours=get_settings().token_max_ttl_hours)
    if not timedelta(0) < ttl <= longest:
        raise InvalidInput(
            f"a token lifetime must be positive and at most {longest}, not {ttl}",
            [FieldError("ttl", "out of range")],
        )
    user = get_user(session, username=username)
    if not user.active:
        raise PermissionDenied(f"user {username!r} is deactivated")
    allowed = list(ROLE_SCOPES[user.role])
    granted = allowed if scopes is None else [s for s in scopes if s in allowed]
    token = "cpt_" + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ApiToken(
            token_hash=_hash(token),
            username=user.username,
            scopes=granted,
            institution_id=user.institution_id,
            issued_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    return token


def _lookup(session: Session, token_hash: str) -> tuple[Principal, datetime]:
    """(principal, expiry) of a token hash; `Unauthenticated` if unknown, revoked or inactive."""
    found = session.execute(
        select(ApiToken, User)
        .join(User, User.username == ApiToken.username)
        .where(ApiToken.token_hash == token_hash)
    ).first()
    if found is None or found[0].revoked:
        raise Unauthenticated("the bearer token is not known or has been revoked")
    row, user = found
    if not user.active:
        raise Unauthenticated("the token's user no longer exists or is deactivated")
    principal = Principal(
        username=user.username,
        role=user.role,
        institution_id=row.institution_id,
        scopes=frozenset(row.scopes),
    )
    return principal, row.expires_at


def _check_expiry(expires_at: datetime) -> None:
    if expires_at <= utcnow():
        raise Unauthenticated("the bearer token has expired; ask for a new one")


def authenticate(session: Session, *, token: str) -> Principal:
    """The principal behind a bearer token; `Unauthenticated` if unknown, expired or revoked."""
    principal, expires_at = _lookup(session, _hash(token))
    _check_expiry(expires_at)
    return principal


class PrincipalCache:
    """Principals of recently used tokens, trusted for `ttl` seconds (decision 0009).

    A hit costs no database read; expiry is still checked on every use. A token revoked with
    `revoke_token` stops working at once in this process and within `ttl` seconds in every
    other process; a revocation or deactivation written by hand takes up to `ttl` seconds.
    Refusals are never cached.
    """

    def __init__(
        self,
        ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[Principal, datetime, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal behind `token` if the cache may answer (no I/O); None: look it up."""
        hit = self._entries.get(_hash(token))
        if hit is None or self._clock() - hit[2] >= self.ttl:
            return None
        _check_expiry(hit[1])
        return hit[0]

    def authenticate(self, sessions: Callable[[], Session], token: str) -> Principal:
        """The principal behind `token`, from the cache or looked up in a session of its own."""
        found = self.cached(token)
        if found is not None:
            return found
        key = _hash(token)
        now = self._clock()
        with sessions() as session:
            principal, expires_at = _lookup(session, key)
        _check_expiry(expires_at)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key] = (principal, expires_at, now)
        return principal

    def forget(self, token_hash: str) -> None:
        with self._lock:
            self._entries.pop(token_hash, None)

    def forget_user(self, username: str) -> None:
        """Drop every cached token of `username` (deactivation)."""
        with self._lock:
            for key in [k for k, v in self._entries.items() if v[0].username == username]:
                del self._entries[key]


# The API's cache: one per process, shared by every app in it.
principals = PrincipalCache()


def hash_token(token: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return _hash(token)


def revoke_token(session: Session, *, token: str) -> bool:
    """Revoke a bearer token; True if it existed. It stops working when the caller commits:
    at once in this process, within `PrincipalCache.ttl` seconds in other API processes.
    (Not audited: callers go through `users.do_revoke_token`.)"""
    return revoke_hash(session, token_hash=_hash(token))


def revoke_hash(session: Session, *, token_hash: str) -> bool:
    """`revoke_token` for a token known by its hash."""
    key = token_hash
    result = session.execute(
        update(ApiToken).where(ApiToken.token_hash == key).values(revoked=True)
    )
    principals.forget(key)
    # A request between now and the commit may read the old row again; forget it once more.
    event.listen(session, "after_commit", lambda _s: principals.forget(key), once=True)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def create_user(
    session: Session,
    *,
    username: Username,
    display_name: str,
    role: Role,
    institution_id: InstitutionId | None,
) -> User:
    """Add a user (no audit: callers go through `do_create_user`)."""
    if role not in CONSORTIUM_ROLES and institution_id is None:
        raise PermissionDenied(f"role {role.value} needs an institution")
    user = User(
        username=username, display_name=display_name, role=role, institution_id=institution_id
    )
    session.add(user)
    session.flush()
    return user
