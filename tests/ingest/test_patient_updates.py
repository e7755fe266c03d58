"""A patient update that changes the identifier set is stored (SQLite and PostgreSQL, also from a
dead letter the old store left), audited one row per patient, and the previous version is kept."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from carepool.core.audit import AuditAction, AuditRecord
from carepool.core.time import utcnow
from carepool.ingest import actions
from carepool.ingest.models import DeadLetter, DeadLetterStatus
from carepool.records import service as records_service
from carepool.records.models import Patient
from tests.ingest import feeds
from tests.ingest.conftest import SYSTEM, Ingest


def _adt(control: str, identifiers: str, phone: str = "13900000000") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|HIS|HOSP||CAREPOOL|20260302090000+0800||ADT^A08|{control}|P|2.4",
            "EVN|A08|20260302090000+0800",
            f"PID|1||{identifiers}||李^四||19550101|F|||人民路9号^^县城||{phone}",
        ]
    )


BEFORE = _adt("A1", "H0042^^^HOSP^MR")
# The member adds the national id and a new phone number: one identifier kept, one added.
AFTER = _adt("A2", "H0042^^^HOSP^MR~110101195501011234^^^CHN^NNCHN", "13911111111")
# Then drops the national id again and retypes the MRN.
LATER = _adt("A3", "H0042^^^HOSP^PI", "13911111111")


def _identifiers(sessions: sessionmaker[Session]) -> set[tuple[str, str, str]]:
    with sessions() as s:
        patient = s.scalars(select(Patient)).one()
        return {(i.system, i.value, i.type) for i in patient.identifiers}


def test_a_changed_identifier_set_is_stored_audited_and_versioned(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    ingest(feeds.hl7_file(BEFORE), "a1.hl7")
    updated = ingest(feeds.hl7_file(AFTER), "a2.hl7")
    assert (updated.updated, updated.rejected, updated.status) == (1, 0, "succeeded")
    assert _identifiers(members) == {
        ("HOSP", "H0042", "MR"),
        ("CHN", "110101195501011234", "NNCHN"),
    }
    later = ingest(feeds.hl7_file(LATER), "a3.hl7")
    assert (later.updated, later.rejected) == (1, 0)
    assert _identifiers(members) == {("HOSP", "H0042", "PI")}

    with members() as s:
        patient = s.scalars(select(Patient)).one()
        assert patient.phone == "13911111111"
        audits = s.scalars(
            select(AuditRecord)
            .where(AuditRecord.entity_type == "patient", AuditRecord.entity_id == patient.id)
            .order_by(AuditRecord.id)
        ).all()
        assert [a.action for a in audits] == [AuditAction.UPDATE, AuditAction.UPDATE]
        first, second = audits
        assert first.before is not None and first.after is not None
        assert first.before["identifiers"] == [["HOSP", "H0042", "MR"]]
        assert ["CHN", "110101195501011234", "NNCHN"] in first.after["identifiers"]
        assert (first.before["phone"], first.after["phone"]) == ("13900000000", "13911111111")
        assert second.after is not None and second.after["identifiers"] == [["HOSP", "H0042", "PI"]]
        assert "phone" not in second.after  # only what changed
        assert updated.run_id in first.detail and first.source == "cli"
        versions = records_service.versions_of(s, record_id=patient.id)
        assert [v.content["phone"] for v in versions] == ["13900000000", "13911111111"]
        assert versions[0].content["identifiers"] == [["HOSP", "H0042", "MR"]]
        assert versions[0].replaced_by_run == updated.run_id
        assert versions[1].content_hash != patient.content_hash


def test_a_dead_letter_the_identifier_bug_left_is_retried_and_resolves(
    ingest: Ingest, members: sessionmaker[Session]
) -> None:
    ingest(feeds.hl7_file(BEFORE), "a1.hl7")
    raw = feeds.hl7_file(AFTER)
    now = utcnow()
    with members() as s, s.begin():  # what a run of the old store dead-lettered
        letter = DeadLetter(
            run_id="old-run",
            institution_id="hosp",
            format="hl7v2",
            source="a2.hl7",
            position="a2.hl7#1",
            reason="a2.hl7#1/PID: cannot store the patient: UNIQUE constraint failed: "
            "patient_identifier.patient_id, patient_identifier.system, patient_identifier.value",
            rejected=1,
            raw=raw,
            raw_hash=hashlib.sha256(raw).hexdigest(),
            options={},
            created_at=now,
            last_seen_at=now,
        )
        s.add(letter)
        s.flush()
        letter_id = letter.id
    letter, summary = actions.do_retry_dead_letter(members, actor=SYSTEM, id=letter_id)
    assert summary.rejected == 0 and summary.updated == 1
    assert letter.status is DeadLetterStatus.RESOLVED and letter.resolved_by_run == summary.run_id
    assert ("CHN", "110101195501011234", "NNCHN") in _identifiers(members)
