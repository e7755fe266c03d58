"""Hand-written feeds of two members for the master patient index and results across members.

The county hospital (`hosp`) and the village clinic (`clinic`), each with its own HL7 v2 feed, both
know Zhang San: the hospital writes 张三 in characters with a national id, the clinic writes
"Zhang San" in pinyin with its own id and a typo in the phone number. The hospital also knows a
different 张三 (another birth date and phone), Li Si (only at the hospital) and Zhao Liu (赵六),
whom the clinic knows too but with another phone and address: a pair for the review queue.
"""

from __future__ import annotations

from carepool.identity.normalise import national_id_check_char


def national_id(first17: str) -> str:
    """A valid resident id (the check character computed)."""
    return first17 + national_id_check_char(first17)


ZHANG_SAN_NID = national_id("11010119900307123")

# The hospital's LIS and HIS: results under local codes and a method-specific LOINC code.
HOSP_ZHANG_SAN = "\r".join(
    [
        "MSH|^~\\&|LIS|HOSP||CAREPOOL|20260301083000+0800||ORU^R01^ORU_R01|H-MSG1|P|2.5.1",
        f"PID|1||H001^^^HOSP^MR~{ZHANG_SAN_NID}^^^CHN^NNCHN||张^三||19900307|M|||"
        "幸福路1号^^柳村^^310000||13800138000",
        "PV1|1|O|内科门诊^^^HOSP|||||||心内科|||||||||HV001^^^HOSP",
        "OBR|1|HORD1|HLAB1^HOSP|CBC^血常规^L|||20260301080000+0800|||||||||||||||"
        "20260301083000+0800|||F",
        "OBX|1|NM|HGB^血红蛋白^L||135|g/L|130-175|N|||F",
        "OBX|2|NM|WBC^白细胞计数^L||6.2|10^9/L|3.5-9.5|N|||F",
        "OBX|3|NM|789-8^Erythrocytes [#/volume] in Blood by Automated count^LN||4.5|10*12/L|"
        "4.3-5.8|N|||F",
        "OBX|4|NM|PLT^血小板计数^L||210|10^9/L|125-350|N|||F",
    ]
)
HOSP_OTHER_ZHANG_SAN = "\r".join(
    [
        "MSH|^~\\&|LIS|HOSP||CAREPOOL|20260302083000+0800||ORU^R01^ORU_R01|H-MSG2|P|2.5.1",
        "PID|1||H002^^^HOSP^MR||张^三||19750601|M|||人民路9号^^县城||13911112222",
        "OBR|1|HORD2|HLAB2|CBC^血常规^L|||20260302080000+0800|||||||||||||||"
        "20260302083000+0800|||F",
        "OBX|1|NM|HGB^血红蛋白^L||150|g/L|130-175|N|||F",
    ]
)
HOSP_LI_SI = "\r".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260302090000+0800||ADT^A04|H-ADT1|P|2.4",
        "EVN|A04|20260302090000+0800",
        "PID|1||H003^^^HOSP^MR||李^四||19550101|F|||人民路9号^^县城||13900000000",
        "PV1|1|O|内科门诊^^^HOSP|||||||心内科|||||||||HV003^^^HOSP",
    ]
)
HOSP_ZHAO_LIU = "\r".join(
    [
        "MSH|^~\\&|HIS|HOSP||CAREPOOL|20260303090000+0800||ADT^A04|H-ADT2|P|2.4",
        "EVN|A04|20260303090000+0800",
        "PID|1||H004^^^HOSP^MR||赵^六||19850505|F|||建设路3号^^县城||13600000000",
        "PV1|1|O|内科门诊^^^HOSP|||||||心内科|||||||||HV004^^^HOSP",
    ]
)


def hospital_feed() -> bytes:
    messages = (HOSP_ZHANG_SAN, HOSP_OTHER_ZHANG_SAN, HOSP_LI_SI, HOSP_ZHAO_LIU)
    return ("\n".join(messages) + "\n").encode("utf-8")


# The clinic's system: pinyin names, its own ids, haemoglobin in g/dL under a local code.
def _clinic_message(control: str, segments: list[str], event: str = "ORU^R01^ORU_R01") -> str:
    header = f"MSH|^~\\&|CLINIC|CLINIC||CAREPOOL|20260201090000+0800||{event}|{control}|P|2.5.1"
    return "\r".join([header, *segments])


CLINIC_ZHANG_SAN_PID = (
    "PID|1||C-77^^^CLINIC^MR||ZHANG^SAN||19900307|M|||Xingfu Lu 1 hao^^Liucun||138 0013 8001"
)


def _hb_result(n: int, value: float, day: int) -> str:
    when = f"202602{day:02d}0800+0800"
    return _clinic_message(
        f"C-ORU{n}",
        [
            CLINIC_ZHANG_SAN_PID,
            f"OBR|1|CORD{n}|CLAB{n}|CBC^血常规^L|||{when}|||||||||||||||{when}|||F",
            f"OBX|1|NM|HB^血红蛋白^L||{value}|g/dL|12-16|N|||F",
        ],
    )


def clinic_feed(*, extra_hb: int = 0) -> bytes:
    """The clinic's feed; `extra_hb` adds that many more haemoglobin results of Zhang San."""
    messages = [
        _hb_result(0, 13.1, 20),
        _clinic_message(
            "C-ADT1",
            [
                "EVN|A04|20260201090000+0800",
                "PID|1||C-99^^^CLINIC^MR||赵^六||19850505|F|||柳村东头||15900000000",
            ],
            "ADT^A04",
        ),
        _clinic_message(
            "C-ADT2",
            ["EVN|A04|20260201090000+0800", "PID|1||C-88^^^CLINIC^MR||WANG^WU||19660606|M"],
            "ADT^A04",
        ),
    ]
    messages += [_hb_result(i + 1, round(12.0 + i / 10, 1), i + 1) for i in range(extra_hb)]
    return ("\n".join(messages) + "\n").encode("utf-8")
