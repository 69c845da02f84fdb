"""The YAML suites load, are well-formed, reference canonical columns and cover the brief."""

from __future__ import annotations

import re

import pytest

from expectations.checks import (
    CATEGORIES,
    SEVERITIES,
    SuiteError,
    load_all_suites,
    load_suite,
    parse_check,
)
from tests.expectations.suite_cases import CASES, COMMON, TABLES
from transforms.canonical import TABLES as CANONICAL_TABLES
from transforms.canonical import columns_of

REQUIRED_IDS = {
    *(
        f"{t}.{name}"
        for t in TABLES
        for name in (
            "columns_present",
            "row_hash_unique",
            "patient_key_not_null",
            "values_parseable",
        )
    ),
    "patient.birth_date_not_null",
    "patient.sex_in_value_set",
    "patient.resident_id_checksum",
    "patient.death_after_birth",
    "patient.birth_date_not_future",
    "patient.birth_date_after_1900",
    "patient.hbsag_in_value_set",
    "patient.hcv_ab_in_value_set",
    "diagnosis.diagnosis_date_not_null",
    "diagnosis.diagnosis_date_not_future",
    "diagnosis.code_mapped",
    "diagnosis.bclc_in_value_set",
    "diagnosis.cnlc_in_value_set",
    "diagnosis.child_pugh_in_value_set",
    "diagnosis.ecog_range",
    "diagnosis.m1_implies_stage_iv",
    "diagnosis.tnm_t_format",
    "diagnosis.icd10_format",
    "lab.collected_at_not_null",
    "lab.collected_at_not_future",
    "lab.source_value_not_null",
    "lab.value_non_negative",
    "lab.unit_convertible",
    "lab.code_mapped",
    "lab.range_afp",
    "lab.range_bilirubin",
    "lab.range_albumin",
    "lab.range_inr",
    "lab.range_platelets",
    "lab.range_alt",
    "lab.range_ast",
    "lab.range_creatinine",
    "lab.range_cea",
    "treatment.treatment_date_not_null",
    "treatment.code_mapped",
    "treatment.category_in_value_set",
    "treatment.end_after_start",
    "treatment.treatment_date_not_future",
    "followup.contact_date_not_null",
    "followup.vital_status_in_value_set",
    "followup.death_date_when_dead",
}
SHAPE_CHECKS = ("columns_present", "row_hash_unique", "row_hash_not_null")


def test_every_canonical_table_has_a_suite() -> None:
    assert set(load_all_suites()) == set(CANONICAL_TABLES) == set(TABLES)


def test_ids_unique_well_formed_and_cover_the_brief() -> None:
    checks = [check for suite in load_all_suites().values() for check in suite]
    ids = [check.id for check in checks]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(rf"{c.table}\.[a-z0-9_]+", c.id) for c in checks)
    assert REQUIRED_IDS <= set(ids)
    assert len(ids) >= 60


def test_checks_are_governed_and_explained() -> None:
    for check in (c for suite in load_all_suites().values() for c in suite):
        assert check.category in CATEGORIES
        assert check.severity in SEVERITIES
        assert check.explanation.endswith(".")
        assert len(check.explanation.split()) >= 6


def test_expectations_exist_in_gx_and_columns_are_canonical() -> None:
    import great_expectations as gx

    for table, checks in load_all_suites().items():
        names = {column.name for column in columns_of(table)}
        for check in checks:
            class_name = "".join(part.title() for part in check.expectation.split("_"))
            assert hasattr(gx.expectations, class_name), check.id
            for key in ("column", "column_A", "column_B"):
                if key in check.kwargs:
                    assert check.kwargs[key] in names, check.id
            if check.row_condition:
                referenced = re.findall(r"[a-z_]+(?=\s*(?:==|in\b))", check.row_condition)
                assert referenced and set(referenced) <= names, check.id


def test_severities_match_the_brief() -> None:
    severity = {c.id: c.severity for s in load_all_suites().values() for c in s}
    for table in TABLES:
        assert severity[f"{table}.columns_present"] == "critical"
        assert severity[f"{table}.row_hash_unique"] == "critical"
        assert severity[f"{table}.patient_key_not_null"] == "quarantine"
        assert severity[f"{table}.values_parseable"] == "quarantine"
    assert severity["patient.resident_id_checksum"] == "quarantine"
    assert severity["followup.death_date_when_dead"] == "warn"


def test_placeholders_are_resolved() -> None:
    checks = {c.id: c for c in load_suite("lab")}
    assert checks["lab.collected_date_not_future"].kwargs["max_value"] == {"$PARAMETER": "run_date"}
    assert checks["lab.collected_at_not_future"].kwargs["max_value"] == {
        "$PARAMETER": "run_end_utc"
    }
    assert checks["lab.columns_present"].kwargs["column_set"] == [c.name for c in columns_of("lab")]


def test_every_check_has_a_good_and_bad_case() -> None:
    covered = {f"{t}.{case[0]}" for t in TABLES for case in COMMON + CASES[t]}
    covered |= {f"{t}.{name}" for t in TABLES for name in SHAPE_CHECKS}
    assert covered == {c.id for s in load_all_suites().values() for c in s}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": "lab.x"}, "missing keys"),
        (
            {
                "id": "patient.x",
                "category": "accuracy",
                "severity": "warn",
                "expectation": "expect_x",
                "kwargs": {},
                "explanation": "Why.",
            },
            "id must look like",
        ),
        (
            {
                "id": "lab.x",
                "category": "accuracy",
                "severity": "warn",
                "expectation": "expect_x",
                "kwargs": {},
                "explanation": "Why.",
            },
            "category",
        ),
        (
            {
                "id": "lab.x",
                "category": "conformance",
                "severity": "fatal",
                "expectation": "expect_x",
                "kwargs": {},
                "explanation": "Why.",
            },
            "severity",
        ),
        (
            {
                "id": "lab.x",
                "category": "conformance",
                "severity": "warn",
                "expectation": "expect_x",
                "kwargs": {"max_value": "$tomorrow"},
                "explanation": "Why.",
            },
            "placeholder",
        ),
    ],
)
def test_malformed_entries_are_rejected(entry: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_check("lab", entry, 0)


def test_unknown_table_is_rejected() -> None:
    with pytest.raises(SuiteError, match="unknown canonical table"):
        load_suite("imaging")
