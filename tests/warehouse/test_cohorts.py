"""Known-answer tests of the cohort marts on hand-built core tables (in-memory DuckDB)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tests.warehouse.core_tables import finding, lab, make_core
from warehouse.cohorts import build_cohorts, load_cohort_plan

INDEX = "2023-01-10"
D = dt.date

# patient: bilirubin umol/L, albumin g/L, INR, ascites, encephalopathy ->
#          Child-Pugh points (bili, alb, inr, asc, enc), score, class, ALBI score, ALBI grade.
# ALBI = 0.66 * log10(bili) - 0.085 * alb, by hand: log10(10) = 1, log10(33.9) = 1.530200,
# log10(34) = 1.531479, log10(50) = 1.698970, log10(50.1) = 1.699838, log10(120) = 2.079181,
# log10(30) = 1.477121.
LIVER_CASES = [
    # bilirubin 33.9 < 34, albumin 35.1 > 35, INR 1.69 < 1.7: all 1 point -> 5, A
    ("p01", 33.9, 35.1, 1.69, "none", "none", 5, "A", -1.973568, 2),
    # bilirubin 34 is the first 2-point value -> 6, A (top of A)
    ("p02", 34.0, 36.0, 1.0, "none", "none", 6, "A", -2.049224, 2),
    # albumin 35 is 2 points -> 7, B (bottom of B)
    ("p03", 34.0, 35.0, 1.0, "none", "none", 7, "B", -1.964224, 2),
    # bilirubin 50, albumin 28, INR 1.7 are the 2-point edges; mild ascites 2 -> 9, B (top)
    ("p04", 50.0, 28.0, 1.7, "mild", "none", 9, "B", -1.258680, 3),
    # bilirubin 50.1 > 50 is 3 points -> 10, C (bottom of C)
    ("p05", 50.1, 28.0, 1.7, "mild", "none", 10, "C", -1.258107, 3),
    # everything 3 points -> 15, C
    ("p06", 120.0, 20.0, 2.4, "moderate-severe", "grade3-4", 15, "C", -0.327740, 3),
    # INR 2.3 is 2 points, encephalopathy grade1-2 is 2 -> 7; ALBI -2.604 <= -2.60 -> grade 1
    ("p07", 10.0, 38.4, 2.3, "none", "grade1-2", 7, "B", -2.604000, 1),
    # INR 2.31 > 2.3 is 3 points -> 7; ALBI -2.5955 > -2.60 -> grade 2
    ("p08", 10.0, 38.3, 2.31, "none", "none", 7, "B", -2.595500, 2),
    # albumin 27.9 < 28 is 3 points -> 7; ALBI -1.7115 -> grade 2
    ("p09", 10.0, 27.9, 1.1, "none", "none", 7, "B", -1.711500, 2),
    # ALBI -1.431 <= -1.39 -> grade 2
    ("p10", 10.0, 24.6, 1.1, "none", "none", 7, "B", -1.431000, 2),
    # ALBI -1.38 > -1.39 -> grade 3
    ("p11", 10.0, 24.0, 1.1, "none", "none", 7, "B", -1.380000, 3),
]


def _liver_core():
    patients, conditions, observations = [], [], []
    for pid, bili, alb, inr, ascites, enceph, *_ in LIVER_CASES:
        patients.append({"patient_id": pid, "gender": "male", "birth_date": "1960-01-11"})
        conditions.append(
            {
                "patient_id": pid,
                "icd10_code": "C22.0",
                "morphology_code": "8170/3",
                "onset_date": INDEX,
            }
        )
        observations += [
            lab(pid, "1975-2", bili, "umol/L", INDEX),
            lab(pid, "1751-7", alb, "g/L", INDEX),
            lab(pid, "6301-6", inr, "{INR}", INDEX),
            finding(pid, "ascites", ascites, INDEX),
            finding(pid, "hepatic-encephalopathy", enceph, INDEX),
        ]
    # p12: INR missing -> no computed score; the recorded class B stands. Cholangiocarcinoma.
    patients.append(
        {
            "patient_id": "p12",
            "gender": "female",
            "birth_date": "1960-01-10",
            "deceased_date": "2024-01-10",
        }
    )
    conditions.append({"patient_id": "p12", "icd10_code": "C22.1", "onset_date": INDEX})
    observations += [
        lab("p12", "1975-2", 30.0, "umol/L", "2023-01-01"),
        lab("p12", "1751-7", 40.0, "g/L", "2023-01-01"),
        lab("p12", "6301-6", 1.2, "{INR}", "2022-12-01"),  # 40 days before: not baseline
        finding("p12", "ascites", "none", INDEX),
        finding("p12", "hepatic-encephalopathy", "none", INDEX),
        finding("p12", "child-pugh-class", "B", INDEX),
        # AFP: the value nearest the index date within 30 days wins (300 at +5 over 500 at -10)
        lab("p12", "1834-1", 500.0, "ng/mL", "2022-12-31"),
        lab("p12", "1834-1", 300.0, "ng/mL", "2023-01-15"),
        # HBsAg positive
        {"patient_id": "p12", "code": "5196-1", "value_code": "10828004"},
    ]
    return patients, conditions, observations


@pytest.fixture(scope="module")
def liver():
    patients, conditions, observations = _liver_core()
    con = make_core(patient=patients, condition=conditions, observation=observations)
    build_cohorts(con)
    frame = con.execute("SELECT * FROM cohort.liver_patient").df().set_index("patient_id")
    con.close()
    return frame


@pytest.mark.parametrize("case", LIVER_CASES, ids=[c[0] for c in LIVER_CASES])
def test_child_pugh_and_albi_known_answers(liver, case) -> None:
    pid, *_, score, cp_class, albi, grade = case
    row = liver.loc[pid]
    assert row["child_pugh_score"] == score
    assert row["child_pugh_class"] == cp_class
    assert row["albi_score"] == pytest.approx(albi, abs=1e-5)
    assert row["albi_grade"] == grade


def test_missing_component_falls_back_to_recorded_class(liver) -> None:
    row = liver.loc["p12"]
    assert pd.isna(row["inr"])  # the only INR is 40 days before the index date
    assert pd.isna(row["child_pugh_score"])
    assert row["child_pugh_class"] == "B"
    assert row["child_pugh_class_recorded"] == "B"
    assert row["albi_score"] == pytest.approx(0.66 * 1.477121 - 3.4, abs=1e-5)
    assert row["albi_grade"] == 2


def test_liver_baseline_demographics_and_status(liver) -> None:
    p12, p01 = liver.loc["p12"], liver.loc["p01"]
    assert p12["afp_ng_ml"] == 300.0
    assert p12["histology"] == "cholangiocarcinoma"
    assert p01["histology"] == "hcc"
    assert p12["hbv_status"] == "positive"
    assert pd.isna(p01["hbv_status"])
    # born 1960-01-10: 63 on 2023-01-10; born 1960-01-11: still 62
    assert p12["age_at_index"] == 63
    assert p01["age_at_index"] == 62
    assert p12["vital_status"] == "dead"
    assert p12["death_date"].date() == D(2024, 1, 10)
    assert p01["vital_status"] == "alive"


def test_bclc_recorded_or_derived() -> None:
    con = make_core(
        patient=[{"patient_id": p} for p in ("r", "d", "n")],
        condition=[
            {"patient_id": p, "icd10_code": "C22.0", "onset_date": INDEX} for p in ("r", "d", "n")
        ],
        observation=[
            finding("r", "bclc-stage", "B", INDEX),
            finding("r", "cnlc-stage", "IIIa", INDEX),
            finding("d", "cnlc-stage", "IIIb", INDEX),
            {"patient_id": "n", "code": "89247-1", "value_integer": 3, "effective": INDEX},
        ],
    )
    build_cohorts(con)
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT patient_id, bclc_stage, bclc_derived, cnlc_stage, cnlc_derived "
            "FROM cohort.liver_patient"
        ).fetchall()
    }
    assert rows["r"] == ("B", False, "IIIa", False)  # recorded wins over CNLC IIIa -> C
    assert rows["d"] == ("C", True, "IIIb", False)  # CNLC IIIb -> BCLC C
    assert rows["n"] == ("D", True, "IV", True)  # ECOG 3 -> BCLC D, CNLC IV


def _exposures(patient: str, *items: tuple[str, str, str]) -> list[dict]:
    return [
        {"patient_id": patient, "display": drug, "start_date": start, "end_date": end}
        for drug, start, end in items
    ]


@pytest.fixture(scope="module")
def lines():
    medication = [
        # switch after the 28-day window: two lines
        *_exposures(
            "switch",
            ("sorafenib", "2023-01-01", "2023-03-01"),
            ("lenvatinib", "2023-03-15", "2023-06-01"),
        ),
        # add-on on day 19 (within 28 days): one line with both drugs
        *_exposures(
            "addon_early",
            ("Atezolizumab", "2023-01-01", "2023-04-01"),
            ("bevacizumab", "2023-01-20", "2023-04-01"),
        ),
        # add-on on day 45 (after 28 days): a new line, even though line 1 is still running
        *_exposures(
            "addon_late",
            ("carboplatin", "2023-01-01", "2023-03-01"),
            ("pembrolizumab", "2023-02-15", "2023-05-01"),
        ),
        # restart after exactly 90 days: same line; then after 92 days: next line
        *_exposures(
            "gap",
            ("osimertinib", "2023-01-01", "2023-02-01"),
            ("osimertinib", "2023-05-02", "2023-06-01"),
            ("osimertinib", "2023-09-01", "2023-10-01"),
        ),
        # three cycles of a doublet: one line, six exposures
        *_exposures(
            "cycles",
            *[
                (d, s, s)
                for s in ("2023-01-01", "2023-01-22", "2023-02-12")
                for d in ("pemetrexed", "cisplatin")
            ],
        ),
    ]
    con = make_core(medication=medication)
    build_cohorts(con)
    rows = con.execute(
        "SELECT patient_id, line_number, start_date, end_date, regimen, exposure_count "
        "FROM cohort.line_of_therapy ORDER BY patient_id, line_number"
    ).fetchall()
    con.close()
    result: dict[str, list[tuple]] = {}
    for patient, *rest in rows:
        result.setdefault(patient, []).append(tuple(rest))
    return result


def test_line_switch(lines) -> None:
    assert lines["switch"] == [
        (1, D(2023, 1, 1), D(2023, 3, 1), "sorafenib", 1),
        (2, D(2023, 3, 15), D(2023, 6, 1), "lenvatinib", 1),
    ]


def test_line_addon_within_28_days(lines) -> None:
    assert lines["addon_early"] == [
        (1, D(2023, 1, 1), D(2023, 4, 1), "atezolizumab + bevacizumab", 2),
    ]


def test_line_addon_after_28_days(lines) -> None:
    assert lines["addon_late"] == [
        (1, D(2023, 1, 1), D(2023, 3, 1), "carboplatin", 1),
        (2, D(2023, 2, 15), D(2023, 5, 1), "pembrolizumab", 1),
    ]


def test_line_restart_after_gap(lines) -> None:
    assert lines["gap"] == [
        (1, D(2023, 1, 1), D(2023, 6, 1), "osimertinib", 2),
        (2, D(2023, 9, 1), D(2023, 10, 1), "osimertinib", 1),
    ]


def test_line_cycles_stay_one_line(lines) -> None:
    assert lines["cycles"] == [(1, D(2023, 1, 1), D(2023, 2, 12), "cisplatin + pemetrexed", 6)]


def _biomarker(patient: str, code: str, when: str, value_code=None, tps=None) -> dict:
    return {
        "patient_id": patient,
        "category": "laboratory",
        "code_system": "http://loinc.org",
        "code": code,
        "value_code": value_code,
        "value_number": tps,
        "unit": "%" if tps is not None else None,
        "effective": when,
    }


@pytest.fixture(scope="module")
def lung():
    tps = {"t0": 0.5, "t099": 0.99, "t1": 1.0, "t49": 49.0, "t50": 50.0, "t100": 100.0}
    patients = [{"patient_id": p, "birth_date": "1950-06-01"} for p in [*tps, "egfr"]]
    conditions = [
        {
            "patient_id": p["patient_id"],
            "icd10_code": "C34.1",
            "morphology_code": "8140/3",
            "onset_date": INDEX,
        }
        for p in patients
    ]
    observations = [_biomarker(p, "83053-9", "2023-01-12", tps=v) for p, v in tps.items()]
    observations += [
        _biomarker("t50", "83053-9", "2023-06-01", tps=0.0),  # later retest: first test counts
        _biomarker("egfr", "21665-5", "2023-01-12", value_code="exon19del"),
        _biomarker("egfr", "21665-5", "2024-01-12", value_code="T790M"),
        _biomarker("egfr", "100019-9", "2023-01-12", value_code="260385009"),
        _biomarker("egfr", "21702-6", "2023-01-12", value_code="G12C"),
        {"patient_id": "egfr", "code": "21908-9", "value_code": "3B", "effective": INDEX},
        {"patient_id": "egfr", "code": "21905-5", "value_code": "cT2a", "effective": INDEX},
        {"patient_id": "egfr", "code": "89247-1", "value_integer": 1, "effective": INDEX},
    ]
    con = make_core(patient=patients, condition=conditions, observation=observations)
    build_cohorts(con)
    frame = con.execute("SELECT * FROM cohort.lung_patient").df().set_index("patient_id")
    con.close()
    return frame


@pytest.mark.parametrize(
    ("patient", "band"),
    [
        ("t0", "<1%"),
        ("t099", "<1%"),
        ("t1", "1-49%"),
        ("t49", "1-49%"),
        ("t50", ">=50%"),
        ("t100", ">=50%"),
    ],
)
def test_pdl1_bands_at_boundaries(lung, patient, band) -> None:
    assert lung.loc[patient, "pdl1_band"] == band


def test_lung_biomarkers_and_stage(lung) -> None:
    row = lung.loc["egfr"]
    assert row["histology"] == "adenocarcinoma"
    assert row["egfr_status"] == "exon19del"
    assert bool(row["egfr_t790m"]) is True
    assert row["alk_status"] == "negative"
    assert row["kras_g12c_status"] == "G12C"
    assert row["stage_group"] == "IIIB"
    assert row["tnm_t"] == "T2a"
    assert row["ecog"] == 1
    assert pd.isna(lung.loc["t0", "egfr_status"])
    assert lung.loc["t0", "age_at_index"] == 72


def test_survival_time_and_event() -> None:
    con = make_core(
        patient=[
            {"patient_id": "died", "deceased_date": "2021-01-01"},
            {"patient_id": "vs_dead"},
            {"patient_id": "censored"},
        ],
        condition=[
            {"patient_id": p, "icd10_code": "C22.0", "onset_date": "2020-01-01"}
            for p in ("died", "vs_dead", "censored")
        ],
        observation=[
            # death known only from a follow-up's vital status (SNOMED CT Dead)
            {
                "patient_id": "vs_dead",
                "code": "75186-7",
                "value_code": "438949009",
                "effective": "2020-03-01",
            },
            {
                "patient_id": "vs_dead",
                "code": "75186-7",
                "value_code": "419099009",
                "effective": "2020-04-10",
            },
            finding("censored", "bclc-stage", "A", "2020-01-01"),
        ],
        encounter=[{"patient_id": "censored", "start_date": "2020-07-01"}],
    )
    build_cohorts(con)
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT patient_id, cohort, event, time_days, stratum FROM cohort.survival"
        ).fetchall()
    }
    assert rows["died"] == ("liver", 1, 366, "BCLC unknown")  # 2020 is a leap year
    assert rows["vs_dead"] == ("liver", 1, 100, "BCLC unknown")
    assert rows["censored"] == ("liver", 0, 182, "BCLC A")


def test_marts_match_documented_columns_on_empty_core() -> None:
    con = make_core()
    counts = build_cohorts(con)
    plan = load_cohort_plan()
    assert counts == {f"cohort.{m.name}": 0 for m in plan.marts}
    for mart in plan.marts:
        assert mart.grain
        assert all(mart.columns.values())
