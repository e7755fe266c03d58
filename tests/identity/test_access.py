"""Who may decide what in the index: scopes and members, checked in the actions themselves."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.auth import Principal, Role
from carepool.core.errors import Conflict, PermissionDenied
from carepool.identity import actions, service
from carepool.identity.models import LinkRun
from tests.identity.conftest import SYSTEM, Fed


def _steward(institution: str) -> Principal:
    return Principal(
        username=f"steward-{institution}",
        role=Role.DATA_STEWARD,
        institution_id=institution,
        scopes=frozenset({"user/Identity.read", "user/Identity.write"}),
    )


def _linked(sessions: sessionmaker[Session]) -> None:
    actions.do_link(sessions, actor=SYSTEM)


def test_a_members_steward_decides_only_pairs_of_their_member(fed: Fed) -> None:
    _linked(fed.sessions)
    with fed.sessions() as session:
        items, _total = service.get_candidates(session)
        (pair,) = items
        with pytest.raises(PermissionDenied):
            service.access_candidate_by_id(session, _steward("other"), pair.id)
        with pytest.raises(PermissionDenied):
            actions.do_reject_candidate(session, actor=_steward("other"), id=pair.id)
        assert service.access_candidate_by_id(session, _steward("clinic"), pair.id) is pair
        row = actions.do_reject_candidate(session, actor=_steward("clinic"), id=pair.id)
        assert row.status.value == "rejected"
        session.rollback()


def test_a_member_cannot_start_a_consortium_link_run(fed: Fed) -> None:
    with pytest.raises(PermissionDenied):
        actions.do_link(fed.sessions, actor=_steward("clinic"))


def test_merging_persons_of_other_members_is_refused(fed: Fed) -> None:
    _linked(fed.sessions)
    with fed.sessions() as session:
        li = service.person_of(session, patient_id=fed.li_si)
        other = service.person_of(session, patient_id=fed.other_zhang)
        assert li and other
        with pytest.raises(PermissionDenied):
            actions.do_merge_persons(
                session, actor=_steward("clinic"), survivor_id=li, other_id=other
            )


def test_one_link_run_at_a_time(fed: Fed) -> None:
    with fed.sessions() as session, session.begin():
        session.add(LinkRun(id="busy-run", actor="someone"))
    with pytest.raises(Conflict, match="busy-run"):
        actions.do_link(fed.sessions, actor=SYSTEM)
