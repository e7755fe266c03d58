"""Small feeds the project writes itself: a township centre's HL7 v2 CBC with Chinese names and
its own codes and units, ADT and order messages, a FHIR batch bundle (one entry invalid) and
NDJSON, and a CSV export with its mapping document. They cover every connector path without
../shared.
"""

from __future__ import annotations

import copy
import json
from typing import Any

# A township health centre's LIS: local codes, Chinese names, non-UCUM units, L/L haematocrit,
# glucose in mg/dL, one unknown test, and a haemoglobin in g/mL (a unit slip: implausible).
HL7_CBC = "\r".join(
    [
        "MSH|^~\\&|LIS|TOWNSHIP||CAREPOOL|20260301083000+0800||ORU^R01^ORU_R01|MSG0001|P|2.5.1",
        "PID|1||T0001^^^TOWNSHIP^MR~110101199003071234^^^CHN^NNCHN||张^三||19900307|M|||"
        "幸福路1号^^柳村^^310000||13800138000",
        "PV1|1|O|全科门诊^^^TOWNSHIP|||||||全科|||||||||V0001^^^TOWNSHIP",
        "OBR|1|ORD1|LAB1^TOWNSHIP|CBC^血常规^L|||20260301080000+0800|||||||||||||||"
        "20260301083000+0800|||F",
        "OBX|1|NM|HGB^血红蛋白^L||13.5|g/dl|12.0-16.0|N|||F",
        "OBX|2|NM|WBC^白细胞计数^L||6.2|10^9/L|4.0-10.0|N|||F",
        "OBX|3|NM|RBC^红细胞计数^L||4.5|10\\S\\12/L|3.5-5.5|N|||F",
        "OBX|4|NM|PLT^血小板计数^L||210|×10⁹/L|100-300|N|||F",
        "OBX|5|NM|HCT^红细胞压积^L||0.41|L/L|0.37-0.50|N|||F",
        "OBX|6|NM|GLU^葡萄糖^L||99|mg/dL|70-110|N|||F",
        "OBX|7|NM|XYZ^神秘指标^L||1.0|mmol/L||N|||F",
        "OBX|8|NM|HB2^Hb^L||12.5|g/mL|12-16|L|||F",
    ]
)

HL7_ADT_ADMIT = "\r\n".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260302090000+0800||ADT^A01|ADT0001|P|2.4",
        "EVN|A01|20260302090000+0800",
        "PID|1||H0042^^^HOSP^MR||李^四||19550101|F|||人民路9号^^县城||13900000000",
        "PV1|1|I|心内一病区^501^1^HOSP|||||||心内科|||||||||IP0042^^^HOSP|||||||||||||||||||||||||"
        "20260302090000+0800",
    ]
)
HL7_ADT_DISCHARGE = "\n".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260305100000+0800||ADT^A03|ADT0002|P|2.4",
        "EVN|A03|20260305100000+0800",
        "PID|1||H0042^^^HOSP^MR||李^四||19550101|F|||人民路9号^^县城||13900000000",
        "PV1|1|I|心内一病区^501^1^HOSP|||||||心内科|||||||||IP0042^^^HOSP|||||||||||||||||||||||||"
        "20260302090000+0800|20260305100000+0800",
    ]
)
HL7_ORDER = "\r".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260302100000+0800||ORM^O01|ORM0001|P|2.3",
        "PID|1||H0042^^^HOSP^MR||李^四||19550101|F",
        "ORC|NW|PL0001^HIS|||||||20260302100000+0800",
        "OBR|1|PL0001^HIS||58410-2^CBC panel^LN|R|20260302100000+0800",
    ]
)
# Not a message at all, then a message whose only OBX has no identifier.
HL7_BROKEN = "\r".join(
    [
        "this is not HL7",
        "MSH|^~\\&|LIS|TOWNSHIP||CAREPOOL|20260301083000+0800||ORU^R01|MSG0002|P|2.5.1",
        "PID|1||T0002^^^TOWNSHIP^MR||王^五||19800101|M",
        "OBR|1||LAB2|CBC^血常规^L|||20260301080000+0800",
        "OBX|1|NM|||5.0|mmol/L|||||F",
        "OBX|2|NM|WBC^白细胞计数^L||7.1|10^9/L|4.0-10.0|N|||F",
    ]
)


def hl7_file(*messages: str) -> bytes:
    """Messages as one file (CR between segments, a newline between messages)."""
    return ("\n".join(messages) + "\n").encode("utf-8")


def _bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "type": "batch",
        "entry": [
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "id": "0a0a0a0a-0000-0000-0000-000000000001",
                    "identifier": [
                        {
                            "type": {"coding": [{"code": "MR"}]},
                            "system": "urn:clinic:mrn",
                            "value": "C-77",
                        },
                        {
                            "type": {"coding": [{"code": "NNCHN"}]},
                            "system": "urn:oid:2.16.156.10011.1.1",
                            "value": "110101199003071234",
                        },
                    ],
                    "name": [{"family": "张", "given": ["三"]}],
                    "gender": "male",
                    "birthDate": "1990-03-07",
                    "telecom": [{"system": "phone", "value": "13800138000"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000002",
                "resource": {
                    "resourceType": "Encounter",
                    "id": "0a0a0a0a-0000-0000-0000-000000000002",
                    "status": "finished",
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "serviceType": {"text": "全科"},
                    "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                    "period": {"start": "2026-03-01T08:00:00+08:00"},
                },
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000003",
                "resource": {
                    "resourceType": "Observation",
                    "id": "0a0a0a0a-0000-0000-0000-000000000003",
                    "status": "final",
                    "code": {
                        "coding": [
                            {"system": "urn:clinic:lab", "code": "HB", "display": "血红蛋白"}
                        ]
                    },
                    "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                    "encounter": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000002"},
                    "effectiveDateTime": "2026-03-01T08:00:00+08:00",
                    "valueQuantity": {"value": 13.1, "unit": "g/dL"},
                    "referenceRange": [{"low": {"value": 12}, "high": {"value": 16}}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000004",
                "resource": {
                    "resourceType": "Observation",
                    "id": "0a0a0a0a-0000-0000-0000-000000000004",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                    "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                    "effectiveDateTime": "2026-03-01T08:05:00+08:00",
                    "component": [
                        {
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                            "valueQuantity": {
                                "value": 128,
                                "unit": "mmHg",
                                "system": "http://unitsofmeasure.org",
                                "code": "mm[Hg]",
                            },
                        },
                        {
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                            "valueQuantity": {"value": 82, "unit": "mmHg"},
                        },
                    ],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000005",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "id": "0a0a0a0a-0000-0000-0000-000000000005",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                    "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                    "result": [{"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000003"}],
                },
                "request": {"method": "POST", "url": "DiagnosticReport"},
            },
            {
                "fullUrl": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000006",
                "resource": {
                    "resourceType": "Observation",
                    "id": "0a0a0a0a-0000-0000-0000-000000000006",
                    # no status: FHIR R4 requires one, so this entry is rejected
                    "code": {"text": "WBC"},
                    "subject": {"reference": "urn:uuid:0a0a0a0a-0000-0000-0000-000000000001"},
                    "valueQuantity": {"value": 6.0, "unit": "10^9/L"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


def fhir_bundle() -> bytes:
    return json.dumps(_bundle(), ensure_ascii=False).encode("utf-8")


def fhir_bundle_dict() -> dict[str, Any]:
    return copy.deepcopy(_bundle())


def fhir_ndjson() -> bytes:
    patient = {
        "resourceType": "Patient",
        "id": "nd-1",
        "name": [{"family": "Smith", "given": ["Ann"]}],
        "gender": "female",
        "birthDate": "1970-05-05",
    }
    obs = {
        "resourceType": "Observation",
        "id": "nd-obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}], "text": "Glucose"},
        "subject": {"reference": "Patient/nd-1"},
        "effectiveDateTime": "2026-02-01T07:30:00Z",
        "valueQuantity": {
            "value": 126,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    lines = [json.dumps(patient), json.dumps(obs), "{not json"]
    return ("\n".join(lines) + "\n").encode()


# A village clinic's spreadsheet export: Chinese headers, its own date format, local test names
# and department names, declared in the mapping document below.
CSV_PATIENTS = (
    "病人ID,姓名,性别,出生日期,身份证号,电话\n"
    "V01,赵六,男,1948/02/03,110101194802031234,13700000001\n"
    "V02,钱七,女,1960/11/30,,13700000002\n"
)
CSV_RESULTS = (
    "病人ID,就诊号,科室,项目代码,项目名称,结果,单位,参考范围,报告时间\n"
    "V01,E1,全科,X01,血红蛋白,11.8,g/dL,,2026/03/01 09:15\n"
    "V01,E1,全科,X02,白细胞,5.5,K/uL,,2026/03/01 09:15\n"
    "V02,E2,全科,X03,空腹血糖,7.2,mmol/L,,2026/03/02 08:40\n"
    ",E3,全科,X01,血红蛋白,12.0,g/dL,,2026/03/02 08:40\n"
    "V02,E2,全科,X01,血红蛋白,12.9,g/dL,,yesterday\n"
)
CSV_MAPPING: dict[str, Any] = {
    "format": "carepool.csv-mapping/1",
    "name": "willow-clinic",
    "id_system": "willow-his",
    "timezone": "Asia/Shanghai",
    "date_formats": ["%Y/%m/%d %H:%M", "%Y/%m/%d"],
    "code_system": "urn:willow:lab",
    "local_codes": {"X02": "26464-8"},
    "units": {"K/uL": "10*3/uL"},
    "departments": {"全科": "02"},
    "tables": [
        {
            "name": "patients",
            "files": ["*patients*.csv"],
            "record": "patient",
            "columns": {
                "local_id": "病人ID",
                "name": "姓名",
                "sex": "性别",
                "birth_date": "出生日期",
                "national_id": "身份证号",
                "phone": "电话",
            },
            "identifiers": [
                {"column": "身份证号", "system": "urn:cn:resident-id", "type": "NNCHN"}
            ],
            "values": {"sex": {"男": "male", "女": "female"}},
        },
        {
            "name": "results",
            "files": ["*results*.csv"],
            "record": "observation",
            "columns": {
                "patient": "病人ID",
                "encounter": "就诊号",
                "code": "项目代码",
                "text": "项目名称",
                "value": "结果",
                "unit": "单位",
                "ref_text": "参考范围",
                "effective_at": "报告时间",
            },
            "defaults": {"status": "final"},
        },
        {
            "name": "visits",
            "files": ["*visits*.csv"],
            "record": "encounter",
            "columns": {
                "local_id": "就诊号",
                "patient": "病人ID",
                "department": "科室",
                "start_at": "就诊时间",
            },
            "defaults": {"status": "finished", "encounter_class": "outpatient"},
        },
    ],
}
CSV_VISITS = (
    "就诊号,病人ID,科室,就诊时间\nE1,V01,全科,2026/03/01 09:00\nE2,V02,中医馆,2026/03/02 08:30\n"
)
