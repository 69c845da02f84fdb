"""One known-good and one known-bad row per check: (check_id, good overrides, bad overrides).

The good overrides are edge cases that must still pass; the bad overrides must fail exactly
that check. Critical checks on frame shape (columns, row hashes) are tested separately.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from tests.expectations.suite_frames import NEXT_DAY, RUN_DATE

TABLES = ("patient", "diagnosis", "lab", "treatment", "biomarker", "followup")
PDL1 = {"loinc_code": "83053-9", "result": None}
RUN_END_LOCAL = pd.Timestamp(RUN_DATE).tz_localize("Asia/Shanghai") + pd.Timedelta(hours=23)

COMMON = [
    ("patient_key_not_null", {"patient_key": "pk-2"}, {"patient_key": None}),
    ("values_parseable", {"_unparsed": None}, {"_unparsed": "value,unit"}),
]

# A case may name other checks its bad row unavoidably fails too, as a fourth element.
CASES: dict[str, list[tuple]] = {
    "patient": [
        ("birth_date_not_null", {}, {"birth_date": None}),
        ("sex_in_value_set", {"sex": "unknown"}, {"sex": "M"}),
        (
            "resident_id_checksum",
            {"resident_id_valid": None, "person_key": None},
            {"resident_id_valid": False, "person_key": None},
        ),
        (
            "death_after_birth",
            {"death_date": dt.date(1960, 3, 1)},
            {"death_date": dt.date(1959, 12, 31)},
        ),
        ("birth_date_not_future", {"birth_date": RUN_DATE}, {"birth_date": NEXT_DAY}),
        (
            "birth_date_after_1900",
            {"birth_date": dt.date(1900, 1, 1)},
            {"birth_date": dt.date(1899, 12, 31)},
        ),
        ("death_date_not_future", {"death_date": RUN_DATE}, {"death_date": NEXT_DAY}),
        ("hbsag_in_value_set", {"hbsag": None}, {"hbsag": "+"}),
        ("hcv_ab_in_value_set", {"hcv_ab": "positive"}, {"hcv_ab": "阳性"}),
        (
            "person_key_when_id_valid",
            {"resident_id_valid": None, "person_key": None},
            {"person_key": None},
        ),
    ],
    "diagnosis": [
        ("diagnosis_date_not_null", {}, {"diagnosis_date": None}),
        ("diagnosis_date_not_future", {"diagnosis_date": RUN_DATE}, {"diagnosis_date": NEXT_DAY}),
        ("local_code_not_null", {"local_code": "D002"}, {"local_code": None}),
        ("code_mapped", {"icd10_code": "C34.1"}, {"icd10_code": None}),
        ("icd10_format", {"icd10_code": "C22"}, {"icd10_code": "C22,0"}),
        ("morphology_format", {"morphology_code": "8140/3"}, {"morphology_code": "81703"}),
        ("bclc_in_value_set", {"bclc_stage": "0"}, {"bclc_stage": "E"}),
        ("cnlc_in_value_set", {"cnlc_stage": "IIIb"}, {"cnlc_stage": "3b"}),
        ("child_pugh_in_value_set", {"child_pugh_class": "C"}, {"child_pugh_class": "B8"}),
        ("ascites_in_value_set", {"ascites": "moderate-severe"}, {"ascites": "yes"}),
        ("encephalopathy_in_value_set", {"encephalopathy": "grade3-4"}, {"encephalopathy": "2"}),
        ("ecog_range", {"ecog": 5}, {"ecog": 6}),
        ("tnm_t_format", {"tnm_t": "T1mi"}, {"tnm_t": "pT2"}),
        ("tnm_n_format", {"tnm_n": "N2b"}, {"tnm_n": "n1"}),
        ("tnm_m_format", {"tnm_m": "M1c", "stage_group": "IVB"}, {"tnm_m": "M2"}),
        ("stage_group_format", {"stage_group": "IIIA"}, {"stage_group": "3A"}),
        (
            "m1_implies_stage_iv",
            {"tnm_m": "M1a", "stage_group": "IVA"},
            {"tnm_m": "M1b", "stage_group": "IIIB"},
        ),
    ],
    "lab": [
        ("collected_at_not_null", {}, {"collected_at": None}),
        (
            "collected_at_not_future",
            {"collected_at": RUN_END_LOCAL.tz_convert("UTC")},
            {"collected_at": pd.Timestamp(RUN_DATE + dt.timedelta(days=2), tz="UTC")},
        ),
        ("collected_date_not_null", {}, {"collected_date": None}),
        ("collected_date_not_future", {"collected_date": RUN_DATE}, {"collected_date": NEXT_DAY}),
        ("local_code_not_null", {"local_code": "L2"}, {"local_code": None}),
        ("code_mapped", {}, {"loinc_code": None}),
        ("loinc_format", {"loinc_code": "718-7", "value": 130.0}, {"loinc_code": "LP1234"}),
        ("source_value_not_null", {}, {"source_value": None}),
        ("value_not_null", {}, {"value": None}),
        ("unit_convertible", {}, {"unit": None}),
        (
            "value_non_negative",
            {"loinc_code": "718-7", "value": 0.0},
            {"loinc_code": "718-7", "value": -1.0},
        ),
        ("range_afp", {"value": 1e6}, {"value": 1.5e6}),
        (
            "range_bilirubin",
            {"loinc_code": "1975-2", "value": 1000.0},
            {"loinc_code": "1975-2", "value": 1001.0},
        ),
        (
            "range_albumin",
            {"loinc_code": "1751-7", "value": 5.0},
            {"loinc_code": "1751-7", "value": 4.0},
        ),
        (
            "range_inr",
            {"loinc_code": "6301-6", "value": 15.0},
            {"loinc_code": "6301-6", "value": 0.4},
        ),
        (
            "range_platelets",
            {"loinc_code": "777-3", "value": 1.0},
            {"loinc_code": "777-3", "value": 2500.0},
        ),
        (
            "range_alt",
            {"loinc_code": "1742-6", "value": 10000.0},
            {"loinc_code": "1742-6", "value": 12000.0},
        ),
        (
            "range_ast",
            {"loinc_code": "1920-8", "value": 0.0},
            {"loinc_code": "1920-8", "value": 10001.0},
        ),
        (
            "range_creatinine",
            {"loinc_code": "2160-0", "value": 2500.0},
            {"loinc_code": "2160-0", "value": 9.0},
        ),
        (
            "range_cea",
            {"loinc_code": "2039-6", "value": 1e5},
            {"loinc_code": "2039-6", "value": 2e5},
        ),
    ],
    "treatment": [
        ("treatment_date_not_null", {}, {"treatment_date": None}),
        (
            "treatment_date_not_future",
            {"treatment_date": RUN_DATE, "end_date": None},
            {"treatment_date": NEXT_DAY, "end_date": None},
        ),
        (
            "end_after_start",
            {"end_date": dt.date(2023, 6, 1)},
            {"end_date": dt.date(2023, 5, 31)},
        ),
        ("local_code_not_null", {"local_code": "T02"}, {"local_code": None}),
        ("code_mapped", {}, {"code": None}),
        (
            "code_system_when_mapped",
            {"category": "procedure", "code_system": "http://snomed.info/sct", "code": "387713003"},
            {"code_system": None},
        ),
        ("category_in_value_set", {"category": "procedure"}, {"category": "drug"}),
        ("category_not_null", {}, {"category": None}),
    ],
    "biomarker": [
        ("test_date_not_null", {}, {"test_date": None}),
        ("test_date_not_future", {"test_date": RUN_DATE}, {"test_date": NEXT_DAY}),
        ("local_code_not_null", {"local_code": "KRAS"}, {"local_code": None}),
        ("code_mapped", {}, {"loinc_code": None}),
        (
            "loinc_supported",
            {"loinc_code": "21702-6", "result": "G12C"},
            {"loinc_code": "1834-1", "result": None},
        ),
        (
            "result_in_value_set",
            {"result": "exon19del"},
            {"result": "L858X"},
            ("biomarker.egfr_result_in_set",),
        ),
        ("result_not_null", {**PDL1, "tps_percent": 55.0}, {"result": None}),
        ("egfr_result_in_set", {"result": "T790M"}, {"result": "G12C"}),
        (
            "kras_result_in_set",
            {"loinc_code": "21702-6", "result": "negative"},
            {"loinc_code": "21702-6", "result": "L858R"},
        ),
        (
            "fusion_result_in_set",
            {"loinc_code": "100019-9", "result": "positive"},
            {"loinc_code": "102038-7", "result": "T790M"},
        ),
        ("pdl1_tps_not_null", {**PDL1, "tps_percent": 0.0}, {**PDL1, "tps_percent": None}),
        (
            "pdl1_result_null",
            {**PDL1, "tps_percent": 1.0},
            {**PDL1, "result": "positive", "tps_percent": 10.0},
        ),
        ("tps_only_on_pdl1", {"tps_percent": None}, {"tps_percent": 5.0}),
        ("tps_range", {**PDL1, "tps_percent": 100.0}, {**PDL1, "tps_percent": 101.0}),
    ],
    "followup": [
        ("contact_date_not_null", {}, {"contact_date": None}),
        ("contact_date_not_future", {"contact_date": RUN_DATE}, {"contact_date": NEXT_DAY}),
        (
            "vital_status_in_value_set",
            {"vital_status": "dead", "death_date": dt.date(2024, 1, 20)},
            {"vital_status": "deceased"},
        ),
        ("vital_status_not_null", {}, {"vital_status": None}),
        (
            "death_date_when_dead",
            {"vital_status": "dead", "death_date": dt.date(2024, 1, 20)},
            {"vital_status": "dead", "death_date": None},
        ),
        (
            "death_date_only_when_dead",
            {"vital_status": "alive", "death_date": None},
            {"vital_status": "alive", "death_date": dt.date(2024, 1, 20)},
        ),
        (
            "death_date_not_future",
            {"vital_status": "dead", "contact_date": RUN_DATE, "death_date": RUN_DATE},
            {"vital_status": "dead", "contact_date": RUN_DATE, "death_date": NEXT_DAY},
        ),
        (
            "death_not_after_contact",
            {"vital_status": "dead", "death_date": dt.date(2024, 2, 1)},
            {"vital_status": "dead", "death_date": dt.date(2024, 2, 2)},
        ),
    ],
}


def all_cases() -> list[tuple[str, str, dict, dict, tuple[str, ...]]]:
    """(table, check_id, good, bad, also) for every row-level case, common ones included."""
    return [
        (table, f"{table}.{case[0]}", case[1], case[2], case[3] if len(case) > 3 else ())
        for table in TABLES
        for case in COMMON + CASES[table]
    ]
