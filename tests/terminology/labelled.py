"""A labelled set of local test names for the unmapped-term suggestions (deterministic).

Each item is a name a member's system sends for a result, with the LOINC code a steward would
map it to. Three parts:

- `his`: names as Chinese HIS and LIS exports write them (the demo feeds' Chinese names and
  abbreviations — `GLU`, `K`, `HGB`, `血糖`, `肌酐` — with the decorations those systems add:
  the abbreviation in brackets, a method, the specimen, `测定`), written out by hand;
- `english`: English report names as US and UK laboratories and OpenMRS/CIEL concept lists
  write them (`TEMPERATURE`, `Potassium, serum`, `WBC COUNT`);
- `generated`: every seed analyte's Chinese name, abbreviation and English component put
  through the same decorations by rule (`钾(K)`, `K-钾`, `钾测定`, `Potassium, serum`), so each
  analyte the seed knows is tried, not only the common ones.

The truth is compared on the code results are filed under (`filed_code`): a suggestion of the
serum glucose code for a name that means whole-blood glucose is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from carepool.terminology.seed import load_seed


@dataclass(frozen=True)
class Labelled:
    term: str
    loinc: str
    source: str  # his | english | generated


# (name as sent, LOINC) — Chinese HIS/LIS local names
_HIS = (
    ("GLU", "14749-6"),
    ("K", "2823-3"),
    ("HGB", "718-7"),
    ("血糖", "14749-6"),
    ("肌酐", "14682-9"),
    ("葡萄糖(GLU)", "14749-6"),
    ("血清葡萄糖测定", "14749-6"),
    ("葡萄糖(己糖激酶法)", "14749-6"),
    ("空腹血糖(FBG)", "14771-0"),
    ("快速血糖(末梢)", "15074-8"),
    ("钾(K)", "2823-3"),
    ("钾离子(K+)", "2823-3"),
    ("血清钾测定", "2823-3"),
    ("钠(Na)", "2951-2"),
    ("钠离子 Na+", "2951-2"),
    ("氯(Cl)", "2075-0"),
    ("钙(Ca)", "2000-8"),
    ("肌酐(CREA)", "14682-9"),
    ("肌酐(酶法)", "14682-9"),
    ("血清肌酐测定", "14682-9"),
    ("尿素(UREA)", "22664-7"),
    ("尿素氮(BUN)", "3094-0"),
    ("尿酸(UA)", "14933-6"),
    ("白细胞(WBC)", "26464-8"),
    ("白细胞计数 WBC", "26464-8"),
    ("红细胞(RBC)", "26453-1"),
    ("血红蛋白(HGB)", "718-7"),
    ("血红蛋白量", "718-7"),
    ("血小板(PLT)", "26515-7"),
    ("血小板计数(PLT)", "26515-7"),
    ("红细胞压积(HCT)", "20570-8"),
    ("平均红细胞体积(MCV)", "30428-7"),
    ("中性粒细胞百分比(NEUT%)", "26511-6"),
    ("淋巴细胞绝对值(LYMPH#)", "26474-7"),
    ("谷丙转氨酶(ALT)", "1742-6"),
    ("谷草转氨酶(AST)", "1920-8"),
    ("碱性磷酸酶(ALP)", "6768-6"),
    ("γ-谷氨酰转肽酶(GGT)", "2324-2"),
    ("总胆红素(TBIL)", "14631-6"),
    ("直接胆红素(DBIL)", "14629-0"),
    ("白蛋白(ALB)", "1751-7"),
    ("总蛋白(TP)", "2885-2"),
    ("总胆固醇(TC)", "14647-2"),
    ("甘油三酯(TG)", "14927-8"),
    ("高密度脂蛋白胆固醇(HDL-C)", "14646-4"),
    ("低密度脂蛋白胆固醇(LDL-C)", "22748-8"),
    ("糖化血红蛋白(HbA1c)", "4548-4"),
    ("铁蛋白(FER)", "2276-4"),
    ("血清铁蛋白测定", "2276-4"),
    ("C-反应蛋白(CRP)", "1988-5"),
    ("肌酸激酶(CK)", "2157-6"),
    ("乳酸脱氢酶(LDH)", "2532-0"),
    ("促甲状腺激素(TSH)", "3016-3"),
    ("凝血酶原时间(PT)", "5902-2"),
    ("国际标准化比值(INR)", "6301-6"),
    ("活化部分凝血活酶时间(APTT)", "3173-2"),
    ("纤维蛋白原(FIB)", "3255-7"),
    ("收缩压(mmHg)", "8480-6"),
    ("舒张压(mmHg)", "8462-4"),
    ("体温(℃)", "8310-5"),
    ("体重(kg)", "29463-7"),
    ("身高(cm)", "8302-2"),
    ("xuetang", "14749-6"),
    ("jigan", "14682-9"),
)
# English report names, and OpenMRS/CIEL concept names (the Synthea HIV bundles send those)
_ENGLISH = (
    ("TEMPERATURE (C)", "8310-5"),
    ("PULSE", "8867-4"),
    ("BLOOD OXYGEN SATURATION", "59408-5"),
    ("WEIGHT (KG)", "29463-7"),
    ("HEIGHT (CM)", "8302-2"),
    ("SYSTOLIC BLOOD PRESSURE", "8480-6"),
    ("DIASTOLIC BLOOD PRESSURE", "8462-4"),
    ("RESPIRATORY RATE", "9279-1"),
    ("HEMOGLOBIN", "718-7"),
    ("WHITE BLOOD CELLS", "26464-8"),
    ("PLATELETS", "26515-7"),
    ("SERUM GLUCOSE", "14749-6"),
    ("SERUM CREATININE", "14682-9"),
    ("SERUM POTASSIUM", "2823-3"),
    ("SERUM SODIUM", "2951-2"),
    ("BLOOD UREA NITROGEN", "3094-0"),
    ("ALKALINE PHOSPHATASE", "6768-6"),
    ("Potassium, serum", "2823-3"),
    ("Sodium, serum", "2951-2"),
    ("Glucose, fasting", "14771-0"),
    ("Creatinine, Serum", "14682-9"),
    ("WBC COUNT", "26464-8"),
    ("PLATELET COUNT", "26515-7"),
    ("Haemoglobin (g/L)", "718-7"),
    ("Hematocrit %", "20570-8"),
    ("Neutrophil %", "26511-6"),
    ("Lymphocyte #", "26474-7"),
    ("Ferritin, serum", "2276-4"),
    ("C-Reactive Protein", "1988-5"),
    ("Total Cholesterol", "14647-2"),
    ("HDL Cholesterol", "14646-4"),
    ("Triglycerides, fasting", "14927-8"),
    ("Hemoglobin A1c", "4548-4"),
    ("TSH, 3rd generation", "3016-3"),
    ("Prothrombin Time", "5902-2"),
    ("Uric Acid", "14933-6"),
    ("Bilirubin, Total", "14631-6"),
    ("Albumin, serum", "1751-7"),
    ("Magnesium, serum", "2601-3"),
    ("Phosphorus, serum", "14879-1"),
)

_SPECIMEN_WORDS = {"Ser/Plas": "serum", "Bld": "blood", "PPP": "plasma"}


def _english(component: str, prop: str) -> str:
    """An English report name for a LOINC component: `Basophils %`, `Basophils count`."""
    name = component.replace(".total", " total").replace(".direct", " direct")
    if prop == "NFr":
        return f"{name.split('/')[0]} %"
    if prop == "NCnc":
        return f"{name} count"
    return name


def _generated() -> list[Labelled]:
    seed = load_seed()
    out: list[Labelled] = []
    for n, analyte in enumerate(sorted(seed.analytes.values(), key=lambda a: a.loinc)):
        if not analyte.unit:
            continue  # panels are orders, not results
        abbreviations = [
            x for x in analyte.names if re.fullmatch(r"[A-Za-z][A-Za-z0-9#%\-]{0,6}", x)
        ]
        abbr = abbreviations[0] if abbreviations else ""
        zh = analyte.display_zh
        term = seed.loinc[analyte.loinc]
        component = term.component
        if not term.name.startswith(component.split(".")[0]):  # `Breaths`: use the long name
            component = re.split(r" \[| in | by | of ", term.name)[0]
        english = _english(component, term.property)
        specimen = _SPECIMEN_WORDS.get(term.system, "")
        variants = []
        if zh and abbr:
            variants += [f"{zh}({abbr})", f"{abbr}-{zh}"]
        if zh:
            variants.append(f"{zh}测定" if n % 2 else f"*{zh}")
        variants.append(f"{english}, {specimen}" if specimen else f"{english} (measured)")
        out += [Labelled(v, analyte.loinc, "generated") for v in variants]
    return out


def labelled_set() -> list[Labelled]:
    """Every item, in a fixed order."""
    items = [Labelled(t, c, "his") for t, c in _HIS]
    items += [Labelled(t, c, "english") for t, c in _ENGLISH]
    return items + _generated()


# OpenMRS/CIEL concept ids (as the Synthea HIV bundles send them, padded with `A`s under the
# LOINC system) and the LOINC code each concept is mapped to in CIEL
CIEL_TRUTH = {
    "5085": "8480-6",  # systolic blood pressure
    "5086": "8462-4",  # diastolic blood pressure
    "5087": "8867-4",  # pulse
    "5088": "8310-5",  # temperature (C)
    "5089": "29463-7",  # weight (kg)
    "5090": "8302-2",  # height (cm)
    "5092": "59408-5",  # blood oxygen saturation
    "5242": "9279-1",  # respiratory rate
}
