"""validate_frame decides exactly as GX's stock Validator run on the frame as staged.

The runner plans each suite once per run date, resolves GX's metrics on its own engine, recodes
text columns and indexes rows by position. The reference here is the plain path it replaced:
GX's v1 Validator on the staged dtypes, rows indexed by their hash.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Any

import pandas as pd
import pytest

from expectations import runner
from expectations.checks import load_suite
from expectations.outcome import (
    ROW_KEY,
    RawResult,
    ValidationOutcome,
    build_outcome,
    raised_exception,
)
from tests.expectations.suite_cases import TABLES, all_cases
from tests.expectations.suite_frames import RUN_DATE, make_frame, make_row
from transforms.canonical import columns_of
from transforms.standardize import conform

STOCK_FORMAT = {**runner.RESULT_FORMAT, "unexpected_index_column_names": [ROW_KEY]}
# Copies of the case rows in a large frame: enough to pass the repeat sample, so text columns
# are recoded the way a real batch's are.
COPIES = 2 * runner._REPEAT_SAMPLE // 30


@cache
def stock_batch_definition(table: str) -> Any:
    source = runner._get_context().data_sources.get("walnut")
    asset = source.add_dataframe_asset(name=f"stock_{table}")
    return asset.add_batch_definition_whole_dataframe(name="whole_frame")


def stock_prepare(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """ns dates and UTC timestamps as GX needs them; text untouched; rows indexed by hash."""
    converted = {}
    for column in columns_of(table):
        if column.name not in frame.columns:
            continue
        series = frame[column.name]
        if column.dtype == "date" and not pd.api.types.is_datetime64_ns_dtype(series):
            converted[column.name] = runner.to_ns_dates(series)
        elif column.dtype == "timestamp" and not isinstance(series.dtype, pd.DatetimeTZDtype):
            converted[column.name] = pd.to_datetime(series, utc=True)
    prepared = frame.assign(**converted)
    if ROW_KEY in prepared.columns:
        prepared = prepared.set_axis(pd.CategoricalIndex(prepared[ROW_KEY], name=ROW_KEY))
    return prepared


def stock_strip(gx_result: Any, row_count: int) -> RawResult:
    payload: Mapping[str, Any] = gx_result.result or {}
    if raised_exception(gx_result.exception_info):
        return RawResult(False, True, 0, 0, ())
    if "element_count" not in payload:
        success = bool(gx_result.success)
        return RawResult(success, False, row_count, 0 if success else row_count, ())
    hashes = tuple(
        value
        for entry in payload.get("unexpected_index_list") or ()
        for value in entry[ROW_KEY]
        if isinstance(value, str)
    )
    evaluated = int(payload.get("element_count") or 0) - int(payload.get("missing_count") or 0)
    failed = int(payload.get("unexpected_count") or 0)
    return RawResult(bool(gx_result.success), False, evaluated, failed, hashes)


def stock_outcome(table: str, frame: pd.DataFrame, run_date: dt.date) -> ValidationOutcome:
    """The suite through GX's v1 Validator, one call, results kept as the runner keeps them."""
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(
        batch_definition=stock_batch_definition(table),
        batch_parameters={"dataframe": stock_prepare(table, frame)},
        result_format=STOCK_FORMAT,
    )
    suite = validator.validate_expectation_suite(
        runner._get_suite(table), runner.run_parameters(run_date)
    )
    raw = {
        result.expectation_config.meta["check_id"]: stock_strip(result, len(frame))
        for result in suite.results
    }
    return build_outcome(table, load_suite(table), raw)


def case_rows(table: str) -> list[dict]:
    """The base row, then every case's good and bad row for the table."""
    cases = [case for case in all_cases() if case[0] == table]
    good = [make_row(table, f"{c[1]}:good", c[2]) for c in cases]
    bad = [make_row(table, f"{c[1]}:bad", c[3]) for c in cases]
    return [make_row(table, "base"), *good, *bad]


def staged(table: str, rows: list[dict], style: str) -> pd.DataFrame:
    """`staged` has the dtypes staging writes (transforms.standardize.conform)."""
    if style == "staged":
        return conform(make_frame(table, rows), table)
    return make_frame(table, rows, style)


def copied(rows: list[dict], copies: int) -> list[dict]:
    """The rows repeated, each copy with its own hash (missing hashes stay missing)."""
    return [
        {**row, ROW_KEY: None if row[ROW_KEY] is None else f"{row[ROW_KEY]}#{copy}"}
        for copy in range(copies)
        for row in rows
    ]


def assert_same_as_stock(table: str, frame: pd.DataFrame, run_date: dt.date = RUN_DATE) -> None:
    outcome = runner.validate_frame(table, frame, run_date=run_date)
    assert outcome == stock_outcome(table, frame, run_date)


@pytest.mark.parametrize("style", ["numpy", "python", "staged"])
@pytest.mark.parametrize("table", TABLES)
def test_cases_match_stock_gx(table, style):
    assert_same_as_stock(table, staged(table, case_rows(table), style))


@pytest.mark.parametrize("table", TABLES)
def test_large_recoded_frame_matches_stock_gx(table):
    frame = staged(table, copied(case_rows(table), COPIES), "staged")
    dtypes = runner._prepare(table, frame).dtypes
    assert any(isinstance(dtype, pd.CategoricalDtype) for dtype in dtypes)
    assert pd.api.types.is_object_dtype(dtypes[ROW_KEY])
    assert_same_as_stock(table, frame)


@pytest.mark.parametrize("table", TABLES)
def test_frame_faults_match_stock_gx(table):
    rows = [make_row(table, "h1"), make_row(table, "h1"), make_row(table, None)]
    for copies in (1, COPIES):
        assert_same_as_stock(table, staged(table, copied(rows, copies), "staged"))
    wrong = staged(table, case_rows(table), "staged").drop(columns="_unparsed")
    wrong["patient_name"] = "x"
    assert_same_as_stock(table, wrong)
    assert_same_as_stock(table, staged(table, [], "staged"))


def test_each_run_date_gets_its_own_plan():
    rows = [make_row("lab", "r", {"collected_date": dt.date(2030, 1, 1)})]
    frame = staged("lab", copied(rows, 3), "staged")
    for run_date in (dt.date(2029, 12, 31), dt.date(2030, 1, 1), dt.date(2029, 12, 31)):
        assert_same_as_stock("lab", frame, run_date)


def test_each_row_condition_filters_the_frame_once(monkeypatch):
    frame = staged("lab", copied(case_rows("lab"), 3), "staged")
    runner.validate_frame("lab", frame, run_date=RUN_DATE)  # plan outside the count
    calls: Counter[str] = Counter()
    query = pd.DataFrame.query

    def counting_query(self: pd.DataFrame, expr: str, **kwargs: Any) -> pd.DataFrame:
        calls[expr] += 1
        return query(self, expr, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "query", counting_query)
    runner.validate_frame("lab", frame, run_date=RUN_DATE)
    conditions = {check.row_condition for check in load_suite("lab") if check.row_condition}
    assert calls == Counter(dict.fromkeys(conditions, 1))


def test_compact_text_keeps_every_value():
    repeated = pd.Series(["a", None, "b", "a"] * 10, dtype="string")
    distinct = pd.Series([f"h{i}" for i in range(39)] + [None], dtype="string")
    as_codes, as_objects = runner.compact_text(repeated), runner.compact_text(distinct)
    assert isinstance(as_codes.dtype, pd.CategoricalDtype)
    assert as_objects.dtype == object
    assert as_codes.isna().tolist() == repeated.isna().tolist()
    assert as_codes.dropna().tolist() == repeated.dropna().tolist()
    assert as_objects.dropna().tolist() == distinct.dropna().tolist()


@pytest.mark.parametrize(
    ("condition", "equality_only"),
    [
        ("loinc_code == '1834-1'", True),
        ("code == code", True),
        ("tnm_m in ['M1', 'M1a']", True),
        ("(vital_status != 'dead') & (code not in ['x'])", True),
        ("value > 3", False),
        ("local_code.str.startswith('A')", False),
        ("loinc_code ==", False),
    ],
)
def test_only_equality_conditions_allow_categoricals(condition, equality_only):
    assert runner._equality_only(condition) is equality_only


def test_text_under_a_range_check_is_never_recoded():
    ranged = {
        check.kwargs["column"]
        for table in TABLES
        for check in load_suite(table)
        if check.expectation == "expect_column_values_to_be_between"
    }
    for table in TABLES:
        text = {c.name for c in columns_of(table) if c.dtype == "string"}
        assert runner._unordered_text_columns(table) == text - ranged
