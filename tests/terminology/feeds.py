"""Feeds the terminology tests send (deterministic, written here)."""

from __future__ import annotations

# A hospital LIS sending LOINC: serum and whole-blood glucose (mass units), a whole-blood
# potassium, ferritin in pmol/L, a well-formed code carepool does not ship, a malformed one and
# a unit nobody can read.
HL7_LOINC = "\r".join(
    [
        "MSH|^~\\&|LIS|HOSP||CAREPOOL|20260301083000+0800||ORU^R01^ORU_R01|MSGL1|P|2.5.1",
        "PID|1||H0009^^^HOSP^MR||李^四||19800101|F",
        "OBR|1|ORDL1|LABL1^HOSP|24323-8^CMP^LN|||20260301080000+0800|||||||||||||||"
        "20260301083000+0800|||F",
        "OBX|1|NM|2345-7^Glucose SerPl-mCnc^LN|1|99|mg/dL|70-110|N|||F",
        "OBX|2|NM|2339-0^Glucose Bld-mCnc^LN|2|90|mg/dL|70-110|N|||F",
        "OBX|3|NM|6298-4^Potassium Bld-sCnc^LN|3|4.1|mmol/l|3.5-5.1|N|||F",
        "OBX|4|NM|2276-4^Ferritin SerPl-mCnc^LN|4|224.7|pmol/L||N|||F",
        "OBX|5|NM|77777-1^Mystery^LN|5|3.0|mmol/L||N|||F",
        "OBX|6|NM|2823-8^Potassium typo^LN|6|4.0|mmol/L||N|||F",
        "OBX|7|NM|14682-9^Creatinine^LN|7|80|umol/LL||N|||F",
    ]
)
