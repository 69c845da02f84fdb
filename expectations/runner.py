"""Validate one staging frame against its table's suite in a single Great Expectations run."""

from __future__ import annotations

import ast
import copy
import datetime as dt
import logging
import threading
import traceback
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from expectations.checks import Check, SuiteError, load_suite
from expectations.gx_import import import_gx
from expectations.outcome import (
    ROW_KEY,
    ROW_POSITION,
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
    "unexpected_index_column_names": [ROW_POSITION],
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    # With the row position as the named index, GX returns only positions: no values, no
    # per-row lookups (its per-row path costs ~150 us a failing row).
    "exclude_unexpected_values": True,
}
# Latest moment on earth that is still the run date (UTC-12 end of day), for UTC timestamps.
_RUN_END_OFFSET = pd.Timedelta(hours=36)
_NS_MIN = pd.Timestamp.min.ceil("D").to_datetime64().astype("datetime64[ms]")
_NS_MAX = pd.Timestamp.max.floor("D").to_datetime64().astype("datetime64[ms]")
# Expectations whose pandas metrics only test nullness, equality, membership or text, so they
# judge a categorical column exactly as its strings.
_CATEGORY_SAFE = frozenset(
    {
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_not_be_null",
        "expect_table_columns_to_match_set",
    }
)
# Row-condition syntax that compares values only for equality or membership.
_EQUALITY_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Invert,
    ast.BinOp,
    ast.BitAnd,
    ast.BitOr,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
)
# Rows sampled to judge whether a text column repeats enough to be worth encoding.
_REPEAT_SAMPLE = 10_000
_lock = threading.Lock()


@dataclass(frozen=True)
class _Step:
    """One planned expectation: GX's object, the metrics it reads and their dependency graph."""

    configuration: Any
    expectation: Any
    dependencies: Any
    graph: Any


@dataclass(frozen=True)
class _Plan:
    """Everything GX works out from a suite and its run parameters before it reads any data."""

    steps: tuple[_Step, ...]
    unplanned: tuple[Any, ...]  # results of expectations whose metrics GX could not plan


def validate_frame(table: str, frame: pd.DataFrame, *, run_date: dt.date) -> ValidationOutcome:
    """Run every check of `table` on `frame` in one GX validation; rows are keyed by _row_hash.

    `run_date` is the caller's calendar date; "not future" checks compare with it so a rerun of
    the same frame on the same date gives the same outcome.
    """
    checks = load_suite(table)
    plan = _get_plan(table, dt.date(run_date.year, run_date.month, run_date.day))
    row_hashes = frame[ROW_KEY] if ROW_KEY in frame.columns else None
    raw: dict[str, RawResult] = {}
    for gx_result in _run_plan(plan, _prepare(table, frame)):
        check_id = (gx_result.expectation_config.meta or {}).get("check_id")
        raw[check_id] = strip_gx_result(gx_result, len(frame), row_hashes)
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


def _run_plan(plan: _Plan, frame: pd.DataFrame) -> list[Any]:
    """GX's Validator.graph_validate on a planned suite: resolve its metrics on this frame, then
    let each expectation judge them; errors become failed results as GX records them.
    """
    engine = _engine_type()()
    engine.load_batch_data(batch_id="staging", batch_data=frame)
    validator = _gx_validator(engine)
    configurations = [step.configuration for step in plan.steps]
    graphs = [step.graph for step in plan.steps]
    suite_graph = validator._generate_suite_level_graph_from_expectation_level_sub_graphs(graphs)
    results = list(plan.unplanned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            resolve = validator._resolve_suite_level_graph_and_process_metric_evaluation_errors
            metrics, results, cleared = resolve(
                graph=suite_graph,
                runtime_configuration=_runtime_configuration(),
                expectation_validation_graphs=graphs,
                evrs=results,
                processed_configurations=configurations,
                show_progress_bars=False,
            )
        except Exception as err:  # GX fails every expectation when the whole graph fails
            return _failed(validator, err, configurations, results)
        steps = {id(step.configuration): step for step in plan.steps}
        for configuration in cleared:
            try:
                results.append(_judge(steps[id(configuration)], metrics, engine))
            except Exception as err:  # as GX: one expectation's error fails only that one
                results = _failed(validator, err, [configuration], results)
    return results


def _judge(step: _Step, metrics: dict[Any, Any], engine: Any) -> Any:
    """Expectation.metrics_validate with the dependencies the plan already holds.

    metrics_validate would derive them again (most of a small frame's cost). Its BOOLEAN_ONLY
    trimming is left out because RESULT_FORMAT is COMPLETE.
    """
    from great_expectations.expectations.expectation import (
        _validate_dependencies_against_available_metrics,
    )

    runtime_configuration = _runtime_configuration()
    runtime_configuration["result_format"] = copy.deepcopy(step.dependencies.result_format)
    _validate_dependencies_against_available_metrics(
        validation_dependencies=step.dependencies.get_metric_configurations(), metrics=metrics
    )
    provided = {
        name: metrics[configuration.id]
        for name, configuration in step.dependencies.metric_configurations.items()
    }
    raw = step.expectation._validate(
        metrics=provided, runtime_configuration=runtime_configuration, execution_engine=engine
    )
    return step.expectation._build_evr(raw_response=raw)


def _failed(validator: Any, error: Exception, configurations: list[Any], results: list[Any]) -> Any:
    """GX's own failed results for these expectations, appended to `results`."""
    return validator._catch_exceptions_in_failing_expectation_validations(
        exception_traceback=traceback.format_exc(),
        exception=error,
        failing_expectation_configurations=configurations,
        evrs=results,
    )


def _runtime_configuration() -> dict[str, Any]:
    """What GX's v1 Validator passes to graph_validate: a private copy of the result format."""
    return {"result_format": copy.deepcopy(RESULT_FORMAT)}


def warm_up(tables: tuple[str, ...], run_date: dt.date) -> None:
    """Import GX and build each table's plan now, e.g. once before forking sync workers."""
    _get_context()
    for table in tables:
        _get_plan(table, run_date)


def _get_plan(table: str, run_date: dt.date) -> _Plan:
    with _lock:
        return _build_plan(table, run_date)


@lru_cache(maxsize=64)
def _build_plan(table: str, run_date: dt.date) -> _Plan:
    """What Validator.graph_validate derives from the suite alone, once per table and run date.

    Metric configurations and their dependency graph depend only on each expectation's kwargs,
    yet GX rebuilds them (twice) on every call: most of the cost of validating a small frame.
    """
    import_gx()
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.validator.exception_info import ExceptionInfo
    from great_expectations.validator.validation_graph import ExpectationValidationGraph

    suite = _get_suite(table)
    validator = _gx_validator(_engine_type()())
    runtime_configuration = _runtime_configuration()
    steps: list[_Step] = []
    unplanned: list[Any] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        configurations = validator.process_expectations_for_validation(
            suite.expectation_configurations, run_parameters(run_date)
        )
        for configuration in configurations:
            expectation = configuration.to_domain_obj()
            dependencies = expectation.get_validation_dependencies(
                execution_engine=validator.execution_engine,
                runtime_configuration=runtime_configuration,
            )
            try:
                graph = validator.metrics_calculator.build_metric_dependency_graph(
                    metric_configurations=dependencies.get_metric_configurations(),
                    runtime_configuration=runtime_configuration,
                )
            except Exception as err:  # as GX: the expectation fails with this error each run
                info = ExceptionInfo(
                    exception_traceback=traceback.format_exc(), exception_message=str(err)
                )
                unplanned.append(
                    ExpectationValidationResult(
                        success=False, exception_info=info, expectation_config=configuration
                    )
                )
                continue
            validation_graph = ExpectationValidationGraph(configuration=configuration, graph=graph)
            steps.append(_Step(configuration, expectation, dependencies, validation_graph))
    log.debug("planned GX suite for %s on %s: %s expectations", table, run_date, len(steps))
    return _Plan(tuple(steps), tuple(unplanned))


def _gx_validator(engine: Any) -> Any:
    """GX's Validator on our engine; the context only supplies settings (no progress bars)."""
    from great_expectations.validator.validator import Validator

    return Validator(execution_engine=engine, data_context=_get_context())


@cache
def _engine_type() -> type:
    """GX's pandas engine, for one frame, filtering it once per row condition.

    GX asks for the same row-condition domain for every metric of a conditioned check (about
    six) and each time re-parses the condition and copies every column of the frame.
    """
    from great_expectations.execution_engine import PandasExecutionEngine

    class _FrameEngine(PandasExecutionEngine):
        def __init__(self) -> None:
            super().__init__()
            self._filtered: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}

        def _apply_row_condition_filter(
            self, data: pd.DataFrame, row_condition: Any, domain_kwargs: dict
        ) -> pd.DataFrame:
            key = repr((row_condition, domain_kwargs.get("condition_parser")))
            source, filtered = self._filtered.get(key, (None, None))
            if source is not data:
                filtered = super()._apply_row_condition_filter(data, row_condition, domain_kwargs)
                self._filtered[key] = (data, filtered)
            return filtered

    return _FrameEngine


def run_parameters(run_date: dt.date) -> dict[str, pd.Timestamp]:
    """Suite parameter values for one run: local midnight of run_date and its UTC upper bound."""
    midnight = pd.Timestamp(run_date.year, run_date.month, run_date.day)
    return {"run_date": midnight, "run_end_utc": (midnight + _RUN_END_OFFSET).tz_localize("UTC")}


def _prepare(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Index rows by position, make date columns datetime64[ns] and text cheap to copy.

    GX compares only ns-resolution naive datetimes vectorised; other resolutions fall back to
    a per-value Python loop that takes seconds on a million rows. GX also copies the whole
    frame for every metric that filters rows (see compact_text). The index holds positions,
    mapped back to _row_hash afterwards: pandas probes a text index on every attribute lookup
    of a filtered Series, which costs seconds per million rows; an integer index is never probed.
    """
    converted: dict[str, pd.Series] = {}
    unordered = _unordered_text_columns(table)
    for column in columns_of(table):
        if column.name not in frame.columns:
            continue
        series = frame[column.name]
        if column.dtype == "date" and not pd.api.types.is_datetime64_ns_dtype(series):
            converted[column.name] = to_ns_dates(series)
        elif column.dtype == "timestamp" and not isinstance(series.dtype, pd.DatetimeTZDtype):
            converted[column.name] = pd.to_datetime(series, utc=True)
        elif column.name in unordered and isinstance(series.dtype, pd.StringDtype):
            converted[column.name] = compact_text(series)
    prepared = frame.assign(**converted) if converted else frame
    if ROW_KEY in prepared.columns:
        prepared = prepared.set_axis(pd.RangeIndex(len(prepared), name=ROW_POSITION))
    return prepared


def to_ns_dates(series: pd.Series) -> pd.Series:
    """datetime64[ns] copy of a date column, clipped to the ns range.

    Placeholders such as 9999-12-31 do not fit in ns; clipped, they still fail the same
    "not future" or "after 1900" check instead of crashing the run.
    """
    values = series.to_numpy(dtype="datetime64[ms]", na_value=np.datetime64("NaT"))
    clipped = np.clip(values, _NS_MIN, _NS_MAX)
    return pd.Series(clipped.astype("datetime64[ns]"), index=series.index, name=series.name)


def compact_text(series: pd.Series) -> pd.Series:
    """A text column as categorical codes when its values repeat, else as Python strings.

    Copying a pyarrow string column copies every byte of it (about 80 MB for a million row
    hashes), and GX copies the frame some sixty times per lab suite. Codes copy a few bytes a
    row; object arrays copy a pointer. Distinct values (hashes, keys) stay objects because
    encoding a million unique strings costs more than the copies save.
    """
    sample = series.iloc[:_REPEAT_SAMPLE]
    if sample.nunique() * 2 > len(sample):
        return series.astype(object)
    # Categories in order of appearance: sorting a million strings costs seconds.
    codes, categories = pd.factorize(series)
    values = pd.Categorical.from_codes(codes, categories=categories)
    return pd.Series(values, index=series.index, name=series.name)


@cache
def _unordered_text_columns(table: str) -> frozenset[str]:
    """Text columns the suite never orders, so they may be validated as categoricals.

    pandas refuses <, >, min and max on unordered categoricals: a column under any
    expectation outside _CATEGORY_SAFE stays as it is, and so does all the table's text if a
    row condition does more than compare for equality or membership.
    """
    checks = load_suite(table)
    if any(check.row_condition and not _equality_only(check.row_condition) for check in checks):
        return frozenset()
    ordered = {
        value
        for check in checks
        if check.expectation not in _CATEGORY_SAFE
        for key, value in check.kwargs.items()
        if key in ("column", "column_A", "column_B") and isinstance(value, str)
    }
    return frozenset(c.name for c in columns_of(table) if c.dtype == "string") - ordered


def _equality_only(condition: str) -> bool:
    """True if a pandas query string only tests equality or membership."""
    try:
        tree = ast.parse(condition, mode="eval")
    except SyntaxError:
        return False
    return all(isinstance(node, _EQUALITY_NODES) for node in ast.walk(tree))


@cache
def _get_suite(table: str) -> Any:
    """The table's GX suite, built once per process; GX merges duplicates, so reject them."""
    _get_context()
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

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
    return suite


def gx_kwargs(check: Check) -> dict[str, Any]:
    """Expectation kwargs with the row condition attached in GX's pandas syntax."""
    kwargs = dict(check.kwargs)
    if check.row_condition:
        kwargs["row_condition"] = check.row_condition
        kwargs["condition_parser"] = "pandas"
    return kwargs


@cache
def _get_context() -> Any:
    gx = import_gx()
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
