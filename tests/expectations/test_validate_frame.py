"""validate_frame: known-good and known-bad rows per check, frame-shape failures, no PHI out."""

from __future__ import annotations

import datetime as dt
import logging
from functools import cache

import pytest

from expectations.checks import load_all_suites
from expectations.runner import ValidationOutcome, validate_frame
from tests.expectations.suite_cases import TABLES, all_cases
from tests.expectations.suite_frames import RUN_DATE, make_frame, make_row

SEVERITY = {c.id: c.severity for suite in load_all_suites().values() for c in suite}
CASES = all_cases()
QUARANTINE_CASES = [case for case in CASES if SEVERITY[case[1]] == "quarantine"]
WARN_CASES = [case for case in CASES if SEVERITY[case[1]] == "warn"]
SENTINEL = "张三13800138000"


def flagged(outcome: ValidationOutcome, check_id: str) -> set[str]:
    """Row hashes a quarantine check sent to quarantine."""
    return {row for row, ids in outcome.failed_rows.items() if check_id in ids}


def result_of(outcome: ValidationOutcome, check_id: str):
    (result,) = [r for r in outcome.results if r.check_id == check_id]
    return result


def good_rows(table: str, cases: list) -> list[dict]:
    return [make_row(table, "base")] + [make_row(table, f"{c[1]}:good", c[2]) for c in cases]


@cache
def run_table(table: str, style: str) -> tuple[ValidationOutcome, ValidationOutcome]:
    """One validation of all good rows and one of good plus bad rows, for every quarantine case."""
    cases = [c for c in QUARANTINE_CASES if c[0] == table]
    good = good_rows(table, cases)
    bad = good + [make_row(table, f"{c[1]}:bad", c[3]) for c in cases]
    return (
        validate_frame(table, make_frame(table, good, style), run_date=RUN_DATE),
        validate_frame(table, make_frame(table, bad, style), run_date=RUN_DATE),
    )


@pytest.mark.parametrize("style", ["numpy", "python"])
@pytest.mark.parametrize(("table", "check_id", "good", "bad", "also"), QUARANTINE_CASES)
def test_quarantine_check_flags_exactly_the_bad_rows(table, check_id, good, bad, also, style):
    good_outcome, bad_outcome = run_table(table, style)
    assert good_outcome.failed_rows == {}
    assert good_outcome.critical_failures == []
    assert result_of(good_outcome, check_id).success

    expected = {f"{c[1]}:bad" for c in QUARANTINE_CASES if c[1] == check_id or check_id in c[4]}
    assert flagged(bad_outcome, check_id) == expected
    assert set(bad_outcome.failed_rows[f"{check_id}:bad"]) == {check_id, *also}
    result = result_of(bad_outcome, check_id)
    assert (result.success, result.failed, result.severity) == (False, len(expected), "quarantine")
    assert bad_outcome.critical_failures == []


@pytest.mark.parametrize(("table", "check_id", "good", "bad", "also"), WARN_CASES)
def test_warn_check_records_but_never_quarantines(table, check_id, good, bad, also):
    rows = good_rows(table, [(table, check_id, good, bad, also)])
    good_outcome = validate_frame(table, make_frame(table, rows), run_date=RUN_DATE)
    assert result_of(good_outcome, check_id).success

    rows.append(make_row(table, "bad", bad))
    outcome = validate_frame(table, make_frame(table, rows), run_date=RUN_DATE)
    result = result_of(outcome, check_id)
    assert (result.success, result.failed, result.severity) == (False, 1, "warn")
    assert outcome.failed_rows == {}
    assert outcome.critical_failures == []
    assert outcome.passed


@pytest.mark.parametrize("table", TABLES)
def test_duplicate_or_missing_row_hash_fails_the_run(table):
    rows = [make_row(table, "h1"), make_row(table, "h1"), make_row(table, None)]
    outcome = validate_frame(table, make_frame(table, rows), run_date=RUN_DATE)
    critical = {r.check_id for r in outcome.critical_failures}
    assert critical == {f"{table}.row_hash_unique", f"{table}.row_hash_not_null"}
    assert result_of(outcome, f"{table}.row_hash_unique").failed == 2
    assert not outcome.passed
    assert outcome.failed_rows == {}


@pytest.mark.parametrize("table", TABLES)
def test_wrong_columns_fail_the_run(table):
    frame = make_frame(table, [make_row(table, "h1")]).drop(columns="_unparsed")
    frame["patient_name"] = SENTINEL
    outcome = validate_frame(table, frame, run_date=RUN_DATE)
    critical = {r.check_id for r in outcome.critical_failures}
    # The quarantine check on the missing column cannot run, so it cannot clear any row.
    assert critical == {f"{table}.columns_present", f"{table}.values_parseable"}
    assert result_of(outcome, f"{table}.values_parseable").errored
    assert all(r.success for r in outcome.results if r.check_id not in critical)
    assert SENTINEL not in repr(outcome)


@pytest.mark.parametrize("table", TABLES)
def test_empty_frame_evaluates_nothing_and_passes(table):
    outcome = validate_frame(table, make_frame(table, []), run_date=RUN_DATE)
    assert len(outcome.results) == len(load_all_suites()[table])
    assert all(r.success and r.evaluated == 0 and r.failed == 0 for r in outcome.results)
    assert outcome.failed_rows == {}
    assert outcome.passed


SENTINEL_COLUMNS = {
    "patient": "sex",
    "diagnosis": "icd10_code",
    "lab": "loinc_code",
    "treatment": "category",
    "biomarker": "result",
    "followup": "vital_status",
}


@pytest.mark.parametrize(("table", "column"), SENTINEL_COLUMNS.items())
def test_no_raw_value_leaves_the_runner(table, column, caplog):
    caplog.set_level(logging.DEBUG)
    overrides = {column: SENTINEL}
    if table == "lab":
        overrides |= {"loinc_code": "1834-1", "value": 987654321.5, "local_code": SENTINEL}
    rows = [make_row(table, "ok"), make_row(table, "bad", overrides)]
    if table == "lab":
        rows.append(make_row(table, "bad2", {"loinc_code": SENTINEL}))
    outcome = validate_frame(table, make_frame(table, rows), run_date=RUN_DATE)
    assert "bad" in outcome.failed_rows
    text = repr(outcome) + caplog.text
    assert SENTINEL not in text
    assert "987654321" not in text


def test_placeholder_dates_fail_checks_instead_of_crashing():
    rows = [
        make_row("patient", "far", {"birth_date": dt.date(9999, 12, 31)}),
        make_row("patient", "early", {"birth_date": dt.date(1, 1, 1)}),
    ]
    for style in ("numpy", "python"):
        outcome = validate_frame("patient", make_frame("patient", rows, style), run_date=RUN_DATE)
        assert outcome.failed_rows == {
            "far": ["patient.birth_date_not_future"],
            "early": ["patient.birth_date_after_1900"],
        }


def test_not_future_follows_the_callers_run_date():
    frame = make_frame("lab", [make_row("lab", "r", {"collected_date": dt.date(2030, 1, 1)})])
    later = validate_frame("lab", frame, run_date=dt.date(2030, 1, 1))
    earlier = validate_frame("lab", frame, run_date=dt.date(2029, 12, 31))
    assert later.failed_rows == {}
    assert earlier.failed_rows == {"r": ["lab.collected_date_not_future"]}


def test_evaluated_counts_non_null_values_in_the_condition():
    rows = [
        make_row("lab", "afp", {"value": 1.0}),
        make_row("lab", "afp_null", {"value": None}),
        make_row("lab", "alt", {"loinc_code": "1742-6", "value": 40.0}),
    ]
    outcome = validate_frame("lab", make_frame("lab", rows), run_date=RUN_DATE)
    assert result_of(outcome, "lab.range_afp").evaluated == 1
    assert result_of(outcome, "lab.value_not_null").evaluated == 3
    assert result_of(outcome, "lab.columns_present").evaluated == 3
