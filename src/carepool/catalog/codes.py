"""Standard code lists of the catalogue: departments, resource types, bed features.

Department codes follow the national list of diagnosis-and-treatment subjects (诊疗科目名录):
two digits for a subject, four for a sub-subject. Resource type codes are `<kind>.<type>`;
imaging modalities use DICOM modality codes.
"""

from __future__ import annotations

from typing import Final

# code -> (English, Chinese)
DEPARTMENT_CODES: Final[dict[str, tuple[str, str]]] = {
    "01": ("Preventive care", "预防保健科"),
    "02": ("General practice", "全科医疗科"),
    "03": ("Internal medicine", "内科"),
    "03.01": ("Respiratory medicine", "呼吸内科专业"),
    "03.02": ("Gastroenterology", "消化内科专业"),
    "03.03": ("Neurology", "神经内科专业"),
    "03.04": ("Cardiology", "心血管内科专业"),
    "03.05": ("Haematology", "血液内科专业"),
    "03.06": ("Nephrology", "肾病学专业"),
    "03.07": ("Endocrinology", "内分泌专业"),
    "04": ("Surgery", "外科"),
    "04.01": ("General surgery", "普通外科专业"),
    "04.02": ("Neurosurgery", "神经外科专业"),
    "04.03": ("Orthopaedics", "骨科专业"),
    "04.04": ("Urology", "泌尿外科专业"),
    "04.05": ("Thoracic surgery", "胸外科专业"),
    "04.06": ("Cardiac surgery", "心脏大血管外科专业"),
    "05": ("Obstetrics and gynaecology", "妇产科"),
    "05.01": ("Gynaecology", "妇科专业"),
    "05.02": ("Obstetrics", "产科专业"),
    "07": ("Paediatrics", "儿科"),
    "10": ("Ophthalmology", "眼科"),
    "11": ("Otorhinolaryngology", "耳鼻咽喉科"),
    "12": ("Stomatology", "口腔科"),
    "20": ("Rehabilitation medicine", "康复医学科"),
    "26": ("Anaesthesiology", "麻醉科"),
    "28": ("Intensive care medicine", "重症医学科"),
    "30": ("Laboratory medicine", "医学检验科"),
    "31": ("Pathology", "病理科"),
    "32": ("Medical imaging", "医学影像科"),
    "32.01": ("Radiology", "X线诊断专业"),
    "32.02": ("CT diagnostics", "CT诊断专业"),
    "32.03": ("MRI diagnostics", "磁共振成像诊断专业"),
    "32.05": ("Ultrasound diagnostics", "超声诊断专业"),
    "32.06": ("Electrocardiography", "心电诊断专业"),
    "32.09": ("Endoscopy", "内镜诊断专业"),
    "50": ("Traditional Chinese medicine", "中医科"),
    "14": ("Emergency medicine", "急诊医学科"),
}

RESOURCE_TYPES: Final[dict[str, dict[str, tuple[str, str]]]] = {
    "bed": {
        "bed.general": ("General ward bed", "普通病床"),
        "bed.icu": ("Intensive care bed", "重症监护病床"),
        "bed.isolation": ("Isolation bed", "隔离病床"),
        "bed.paediatric": ("Paediatric bed", "儿科病床"),
        "bed.maternity": ("Maternity bed", "产科病床"),
        "bed.day": ("Day-care bed", "日间病床"),
        "bed.observation": ("Observation bed", "观察床"),
    },
    "room": {
        "room.ward": ("Ward room", "病房"),
        "room.consultation": ("Consultation room", "诊室"),
        "room.procedure": ("Procedure room", "治疗室"),
    },
    "theatre": {
        "theatre.general": ("Operating theatre", "手术室"),
        "theatre.hybrid": ("Hybrid operating theatre", "复合手术室"),
        "theatre.day": ("Day-surgery theatre", "日间手术室"),
    },
    "modality": {
        "modality.CT": ("Computed tomography scanner", "CT"),
        "modality.MR": ("Magnetic resonance scanner", "磁共振"),
        "modality.US": ("Ultrasound", "超声"),
        "modality.DX": ("Digital radiography", "DR数字化X线摄影"),
        "modality.MG": ("Mammography", "乳腺钼靶"),
        "modality.ECG": ("Electrocardiograph", "心电图机"),
        "modality.ES": ("Endoscope", "内镜"),
    },
    "lab_section": {
        "lab.haematology": ("Haematology section", "临床血液室"),
        "lab.chemistry": ("Clinical chemistry section", "生化室"),
        "lab.immunology": ("Immunology section", "免疫室"),
        "lab.microbiology": ("Microbiology section", "微生物室"),
        "lab.point_of_care": ("Point-of-care testing", "床旁检验"),
    },
    "analyser": {
        "analyser.haematology": ("Haematology analyser", "血细胞分析仪"),
        "analyser.chemistry": ("Chemistry analyser", "生化分析仪"),
        "analyser.immunoassay": ("Immunoassay analyser", "免疫分析仪"),
        "analyser.coagulation": ("Coagulation analyser", "凝血分析仪"),
        "analyser.urinalysis": ("Urine analyser", "尿液分析仪"),
    },
    "staff": {
        "staff.surgeon": ("Surgeon", "外科医师"),
        "staff.anaesthetist": ("Anaesthetist", "麻醉医师"),
        "staff.physician": ("Physician", "医师"),
        "staff.nurse": ("Nurse", "护士"),
        "staff.technician": ("Technician", "技师"),
    },
}

BED_FEATURES: Final[dict[str, tuple[str, str]]] = {
    "oxygen": ("Piped oxygen", "中心供氧"),
    "suction": ("Piped suction", "中心负压吸引"),
    "monitor": ("Patient monitor", "心电监护"),
    "ventilator": ("Ventilator", "呼吸机"),
    "isolation": ("Isolation (negative pressure)", "负压隔离"),
    "bariatric": ("Bariatric", "加宽承重"),
    "cot": ("Infant cot", "婴儿床"),
}

ALL_TYPE_CODES: Final[dict[str, str]] = {
    code: kind for kind, codes in RESOURCE_TYPES.items() for code in codes
}
