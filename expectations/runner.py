"""Validate one staging frame against its table's suite in a single Great Expectations run."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from expectations.checks import Check, SuiteError, load_suite
from expectations.outcome import (
    ROW_KEY,
    CheckResult,
    RawResult,
    ValidationOutcome,
    build_outcome,
    strip_gx_result,
)
from transforms.canonical import columns_of

__all__ = [
    "Check",
    "CheckResult",
    "ValidationOutcome",
    "load_suite",
    "validate_frame",
]

log = logging.getLogger(__name__)

RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_KEY],
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    # With _row_hash as the named index, GX then returns only hashes: no values, no per-row
    # lookups (its per-row path costs ~150 us a failing row).
    "exclude_unexpected_values": True,
}
# Latest moment on earth that is still the run date (UTC-12 end of day), for UTC timestamps.
_RUN_END_OFFSET = pd.Timedelta(hours=36)
_NS_MIN = pd.Timestamp.min.ceil("D").to_datetime64().astype("datetime64[ms]")
_NS_MAX = pd.Timestamp.max.floor("D").to_datetime64().astype("datetime64[ms]")
_lock = threading.Lock()


@dataclass(frozen=True)
class _TableValidator:
    """GX objects built once per table and process: a batch definition and the whole suite."""

    batch_definition: Any
    suite: Any


def validate_frame(table: str, frame: pd.DataFrame, *, run_date: dt.date) -> ValidationOutcome:
    """Run every check of `table` on `frame` in one GX validation; rows are keyed by _row_hash.

    `run_date` is the caller's calendar date; "not future" checks compare with it so a rerun of
    the same frame on the same date gives the same outcome.
    """
    checks = load_suite(table)
    built = _get_validator(table)
    suite_result = _run_suite(built, _prepare(table, frame), run_parameters(run_date))
    raw: dict[str, RawResult] = {}
    for gx_result in suite_result.results:
        check_id = (gx_result.expectation_config.meta or {}).get("check_id")
        raw[check_id] = strip_gx_result(gx_result, len(frame))
    outcome = build_outcome(table, checks, raw)
    log.info(
        "validated %s: %s rows, %s checks, %s failed, %s critical, %s rows to quarantine",
        table,
        len(frame),
        len(outcome.results),
        sum(not result.success for result in outcome.results),
        len(outcome.critical_failures),
        len(outcome.failed_rows),
    )
    return outcome


def _run_suite(built: _TableValidator, frame: pd.DataFrame, parameters: dict[str, Any]) -> Any:
    """The one GX validation call for this frame.

    GX's own Validator (what Batch.validate and ValidationDefinition.run use inside) is called
    directly: Batch.validate would load and fingerprint the frame twice, and
    ValidationDefinition.run would keep every result in the context's store.
    """
    from great_expectations.validator.v1_validator import Validator

    validator = Validator(
        batch_definition=built.batch_definition,
        batch_parameters={"dataframe": frame},
        result_format=RESULT_FORMAT,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return validator.validate_expectation_suite(built.suite, parameters)


def run_parameters(run_date: dt.date) -> dict[str, pd.Timestamp]:
    """Suite parameter values for one run: local midnight of run_date and its UTC upper bound."""
    midnight = pd.Timestamp(run_date.year, run_date.month, run_date.day)
    return {"run_date": midnight, "run_end_utc": (midnight + _RUN_END_OFFSET).tz_localize("UTC")}


def _prepare(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Index by _row_hash and make date columns datetime64[ns] (python dates included).

    GX compares only ns-resolution naive datetimes vectorised; other resolutions fall back to
    a per-value Python loop that takes seconds on a million rows. The index is categorical
    because pandas probes a string index on every attribute miss of every filtered Series,
    which costs seconds per million rows; a categorical index answers from its shared categories.
    """
    converted: dict[str, pd.Series] = {}
    for column in columns_of(table):
        if column.name not in frame.columns or column.dtype not in ("date", "timestamp"):
            continue
        series = frame[column.name]
        if column.dtype == "date" and not pd.api.types.is_datetime64_ns_dtype(series):
            converted[column.name] = to_ns_dates(series)
        elif column.dtype == "timestamp" and not isinstance(series.dtype, pd.DatetimeTZDtype):
            converted[column.name] = pd.to_datetime(series, utc=True)
    prepared = frame.assign(**converted) if converted else frame
    if ROW_KEY in prepared.columns:
        prepared = prepared.set_axis(pd.CategoricalIndex(prepared[ROW_KEY], name=ROW_KEY))
    return prepared


def to_ns_dates(series: pd.Series) -> pd.Series:
    """datetime64[ns] copy of a date column, clipped to the ns range.

    Placeholders such as 9999-12-31 do not fit in ns; clipped, they still fail the same
    "not future" or "after 1900" check instead of crashing the run.
    """
    values = series.to_numpy(dtype="datetime64[ms]", na_value=np.datetime64("NaT"))
    clipped = np.clip(values, _NS_MIN, _NS_MAX)
    return pd.Series(clipped.astype("datetime64[ns]"), index=series.index, name=series.name)


def _get_validator(table: str) -> _TableValidator:
    with _lock:
        return _build_validator(table)


@cache
def _build_validator(table: str) -> _TableValidator:
    context = _get_context()
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    asset = context.data_sources.get("walnut").add_dataframe_asset(name=f"staging_{table}")
    batch_definition = asset.add_batch_definition_whole_dataframe(name="whole_frame")
    suite = gx.ExpectationSuite(name=f"staging_{table}")
    checks = load_suite(table)
    with warnings.catch_warnings():
        # String row conditions with the pandas parser are deprecated but still the only way
        # to express str/membership filters declaratively in YAML.
        warnings.simplefilter("ignore", DeprecationWarning)
        for check in checks:
            configuration = ExpectationConfiguration(
                type=check.expectation, kwargs=gx_kwargs(check), meta={"check_id": check.id}
            )
            suite.add_expectation(configuration.to_domain_obj())
    if len(suite.expectations) != len(checks):
        # GX silently merges expectations that differ only in meta; two ids would share one.
        raise SuiteError(f"{table}.yaml: two checks have the same expectation and kwargs")
    log.debug("built GX suite for %s with %s expectations", table, len(checks))
    return _TableValidator(batch_definition, suite)


def gx_kwargs(check: Check) -> dict[str, Any]:
    """Expectation kwargs with the row condition attached in GX's pandas syntax."""
    kwargs = dict(check.kwargs)
    if check.row_condition:
        kwargs["row_condition"] = check.row_condition
        kwargs["condition_parser"] = "pandas"
    return kwargs


@cache
def _get_context() -> Any:
    # Set before import: GX logs at INFO while importing.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.execution_engine import pandas_execution_engine

    # This module pins its own level to INFO at import time.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.ERROR)
    # GX fingerprints every in-memory frame under this size (md5 over hash_pandas_object, about
    # 1.5 s per million lab rows) only to label the batch; our batches carry _batch_id instead.
    pandas_execution_engine.HASH_THRESHOLD = 0
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.data_sources.add_pandas(name="walnut")
    return context
