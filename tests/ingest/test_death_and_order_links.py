"""Death dates and report -> order links, as each connector reads them (pure, no database).

FHIR: `Patient.deceasedDateTime`, `DiagnosticReport.basedOn`; HL7 v2: PID-29/PID-30, OBR-2 and
ORC-2; CSV: a death-date column (Synthea's `DEATHDATE`) and a report's order column.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from carepool.ingest.connectors import ParseOptions, connector_for
from carepool.ingest.connectors.tabular import load_mapping
from carepool.records.schemas import OrderIn, PatientIn, Ref, ReportIn
from tests.ingest import feeds

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _records(fmt: str, data: bytes, name: str = "feed", **kw: Any) -> list[Any]:
    units = list(connector_for(fmt).units(data, source=name, options=ParseOptions(**kw)))
    assert all(not u.errors for u in units), [u.errors for u in units]
    return [p.record for u in units for p in u.records]


def _one(records: list[Any], cls: type) -> Any:
    (found,) = [r for r in records if isinstance(r, cls)]
    return found


# -- FHIR -----------------------------------------------------------------------------------------


def _fhir_patient(**deceased: Any) -> bytes:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", **deceased}
    return json.dumps(patient).encode()


@pytest.mark.parametrize(
    ("deceased", "expected"),
    [
        (
            {"deceasedDateTime": "2026-03-01T08:30:00+08:00"},
            (True, datetime(2026, 3, 1, 0, 30, tzinfo=UTC)),
        ),
        # a day: that day's midnight where the member is
        ({"deceasedDateTime": "2026-03-01"}, (True, datetime(2026, 2, 28, 16, tzinfo=UTC))),
        # a year or a month: deceased, but too vague to date records against
        ({"deceasedDateTime": "2026"}, (True, None)),
        ({"deceasedDateTime": "2026-03"}, (True, None)),
        ({"deceasedBoolean": True}, (True, None)),
        ({"deceasedBoolean": False}, (False, None)),
        ({}, (False, None)),
    ],
)
def test_fhir_patient_death(deceased: dict[str, Any], expected: tuple[bool, Any]) -> None:
    records = _records("fhir", _fhir_patient(**deceased), timezone=SHANGHAI)
    patient = _one(records, PatientIn)
    assert (patient.deceased, patient.deceased_at) == expected


def _report_bundle(*based_on: dict[str, Any]) -> bytes:
    bundle = feeds.fhir_bundle_dict()
    bundle["entry"] = bundle["entry"][:1]
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-0000000000aa",
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "0a0a0a0a-0000-0000-0000-0000000000aa",
                "status": "completed",
                "intent": "order",
                "identifier": [
                    {"system": "urn:his:visit", "value": "V-1"},
                    {
                        "type": {"coding": [{"code": "PLAC"}]},
                        "system": "urn:his:order",
                        "value": "PL-77",
                    },
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                "authoredOn": "2026-03-01T07:00:00+08:00",
            },
            "request": {"method": "POST", "url": "ServiceRequest"},
        }
    )
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-0000000000bb",
            "resource": {
                "resourceType": "DiagnosticReport",
                "id": "0a0a0a0a-0000-0000-0000-0000000000bb",
                "status": "final",
                "basedOn": list(based_on),
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                "effectiveDateTime": "2026-03-01T08:00:00+08:00",
            },
            "request": {"method": "POST", "url": "DiagnosticReport"},
        }
    )
    return json.dumps(bundle).encode()


def test_fhir_report_based_on_a_service_request_in_the_bundle() -> None:
    records = _records(
        "fhir",
        _report_bundle({"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-0000000000aa"}),
    )
    order = _one(records, OrderIn)
    report = _one(records, ReportIn)
    assert report.order == order.ref() == Ref("order", "fhir", order.local_id)
    assert report.placer_number == ""
    assert order.placer_number == "PL-77"  # the identifier typed PLAC, not the first one


def test_fhir_report_based_on_by_relative_reference_and_by_identifier() -> None:
    report = _one(
        _records(
            "fhir",
            _report_bundle(
                {"reference": "CarePlan/cp1"},  # not an order: ignored
                {"reference": "ServiceRequest/sr-9"},
                {"type": "ServiceRequest", "identifier": {"value": "PL-77"}},
            ),
        ),
        ReportIn,
    )
    assert report.order == Ref("order", "fhir", "sr-9")
    assert report.placer_number == "PL-77"
    unlinked = _one(_records("fhir", _report_bundle()), ReportIn)
    assert (unlinked.order, unlinked.placer_number) == (None, "")


# -- HL7 v2 ---------------------------------------------------------------------------------------


def _pid(death: str, indicator: str) -> str:
    fields = ["PID", "1", "", "H0042^^^HOSP^MR", "", "李^四", "", "19550101", "F"]
    fields += [""] * (31 - len(fields))
    fields[29], fields[30] = death, indicator
    return "|".join(fields)


def _adt(pid: str) -> bytes:
    return feeds.hl7_file(
        "\r".join(
            [
                "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260305100000+0800||ADT^A08|ADT0009|P|2.5",
                "EVN|A08|20260305100000+0800",
                pid,
            ]
        )
    )


@pytest.mark.parametrize(
    ("death", "indicator", "expected"),
    [
        ("20260304213000+0800", "Y", (True, datetime(2026, 3, 4, 13, 30, tzinfo=UTC))),
        # no zone: the member's; a day alone: its midnight
        ("202603042130", "Y", (True, datetime(2026, 3, 4, 13, 30, tzinfo=UTC))),
        ("20260304", "", (True, datetime(2026, 3, 3, 16, tzinfo=UTC))),
        ("", "Y", (True, None)),
        ("2026", "Y", (True, None)),  # a year is too vague to date records against
        ("20260304213000+0800", "N", (False, None)),  # the sender took the death back
        ("", "", (False, None)),
    ],
)
def test_hl7_death_date_and_indicator(
    death: str, indicator: str, expected: tuple[bool, Any]
) -> None:
    patient = _one(_records("hl7v2", _adt(_pid(death, indicator)), timezone=SHANGHAI), PatientIn)
    assert (patient.deceased, patient.deceased_at) == expected


def test_hl7_result_keeps_the_placer_order_number_of_obr_or_orc() -> None:
    (report,) = [r for r in _records("hl7v2", feeds.hl7_file(feeds.HL7_CBC)) if r.kind == "report"]
    assert report.placer_number == "ORD1"  # OBR-2
    with_orc = feeds.HL7_CBC.replace(
        "OBR|1|ORD1|LAB1^TOWNSHIP|", "ORC|RE|PL0001^HIS|LAB1\rOBR|1||LAB1^TOWNSHIP|"
    )
    (report,) = [r for r in _records("hl7v2", feeds.hl7_file(with_orc)) if r.kind == "report"]
    assert report.placer_number == "PL0001"  # ORC-2 when OBR-2 is empty
    (order,) = [r for r in _records("hl7v2", feeds.hl7_file(feeds.HL7_ORDER)) if r.kind == "order"]
    assert order.placer_number == "PL0001"  # what the order is found by


# -- CSV ------------------------------------------------------------------------------------------


def test_csv_death_date_column_and_report_order_column() -> None:
    mapping = json.loads(json.dumps(feeds.CSV_MAPPING))
    patients = mapping["tables"][0]
    patients["columns"]["deceased_at"] = "死亡时间"
    mapping["tables"].append(
        {
            "name": "reports",
            "files": ["*reports*.csv"],
            "record": "report",
            "columns": {
                "local_id": "报告号",
                "patient": "病人ID",
                "order": "申请单号",
                "code": "项目代码",
                "effective_at": "报告时间",
            },
        }
    )
    csv_patients = (
        "病人ID,姓名,性别,出生日期,身份证号,电话,死亡时间\n"
        "V01,赵六,男,1948/02/03,,13700000001,2026/03/04 21:30\n"
        "V02,钱七,女,1960/11/30,,13700000002,\n"
    )
    died, alive = _records("csv", csv_patients.encode(), "willow-patients.csv", mapping_doc=mapping)
    assert (died.deceased, died.deceased_at) == (True, datetime(2026, 3, 4, 13, 30, tzinfo=UTC))
    assert (alive.deceased, alive.deceased_at) == (False, None)
    csv_reports = "报告号,病人ID,申请单号,项目代码,报告时间\nR1,V01,A-17,CBC,2026/03/01 09:15\n"
    (report,) = _records("csv", csv_reports.encode(), "willow-reports.csv", mapping_doc=mapping)
    assert report.order == Ref("order", "willow-his", "A-17")
    assert report.placer_number == "A-17"


def test_synthea_death_date_is_kept_as_a_time() -> None:
    header = "Id,BIRTHDATE,DEATHDATE,SSN,DRIVERS,PASSPORT,FIRST,LAST,GENDER,ADDRESS,CITY,STATE,ZIP"
    rows = [
        "a1,1940-02-03,2019-07-14,999-01-0001,,,Ann,Lee,F,1 Main St,Boston,MA,02155",
        "a2,1990-05-06,,999-01-0002,,,Bo,Li,M,2 Main St,Boston,MA,02155",
    ]
    data = ("\n".join([header, *rows]) + "\n").encode()
    assert "deceased_at" in load_mapping("synthea").tables[0].columns
    died, alive = _records("csv", data, "patients.csv", mapping="synthea")
    assert (died.deceased, died.deceased_at) == (True, datetime(2019, 7, 14, tzinfo=UTC))
    assert (alive.deceased, alive.deceased_at) == (False, None)
