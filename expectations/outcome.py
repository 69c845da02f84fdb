"""Turn raw GX expectation results into value-free check results and quarantine row lists."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from expectations.checks import Check

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

ROW_KEY = "_row_hash"
# GX reports failing rows by this index (0-based row positions), mapped back to ROW_KEY here.
ROW_POSITION = "_row_position"


@dataclass(frozen=True)
class CheckResult:
    """Counts for one check on one frame; never carries source values."""

    check_id: str
    table: str
    category: str
    severity: str
    evaluated: int
    failed: int
    success: bool
    explanation: str
    errored: bool = False

    @property
    def fails_run(self) -> bool:
        """A failed critical check, or a quarantine check that could not run: it cannot say
        which rows are bad, so the run fails instead of quarantining."""
        if self.success:
            return False
        return self.severity == "critical" or (self.errored and self.severity == "quarantine")


@dataclass
class ValidationOutcome:
    """Everything the pipeline needs from one validation: results, quarantine rows, run verdict."""

    table: str
    results: list[CheckResult]
    failed_rows: dict[str, list[str]]  # _row_hash -> ids of failed quarantine checks
    critical_failures: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing forces the run to fail."""
        return not self.critical_failures


@dataclass(frozen=True)
class RawResult:
    """The only parts of a GX result the runner keeps: success, counts and row hashes."""

    success: bool
    errored: bool
    evaluated: int
    failed: int
    row_hashes: tuple[str, ...]


def strip_gx_result(gx_result: Any, row_count: int, row_hashes: pd.Series | None) -> RawResult:
    """Keep counts and row hashes of an ExpectationValidationResult; drop every value it holds.

    `row_hashes` is the validated frame's ROW_KEY column (None without one); GX names failing
    rows by position and this turns the positions into hashes.
    """
    errored = raised_exception(gx_result.exception_info)
    payload: Mapping[str, Any] = gx_result.result or {}
    if errored:
        return RawResult(False, True, 0, 0, ())
    if "element_count" not in payload:
        # Table-level expectations (e.g. column set) judge the whole frame at once.
        success = bool(gx_result.success)
        return RawResult(success, False, row_count, 0 if success else row_count, ())
    evaluated = int(payload.get("element_count") or 0) - int(payload.get("missing_count") or 0)
    positions = list(iter_row_positions(payload.get("unexpected_index_list")))
    failed = int(payload.get("unexpected_count") or 0)
    hashes = hashes_at(row_hashes, positions)
    return RawResult(bool(gx_result.success), False, evaluated, failed, hashes)


def iter_row_positions(index_list: Any) -> Iterable[int]:
    """Row positions from either GX shape: one dict per row, or one dict of lists."""
    for entry in index_list or ():
        if not isinstance(entry, Mapping) or ROW_POSITION not in entry:
            continue
        values = entry[ROW_POSITION]
        yield from values if isinstance(values, list | tuple) else (values,)


def hashes_at(row_hashes: pd.Series | None, positions: list[int]) -> tuple[str, ...]:
    """The row hashes at these positions, in order.

    A row without a hash cannot be quarantined; row_hash_not_null fails the run instead.
    """
    if row_hashes is None or not positions:
        return ()
    return tuple(value for value in row_hashes.iloc[positions].tolist() if isinstance(value, str))


def raised_exception(exception_info: Any) -> bool:
    """GX reports errors flat or keyed by metric id; look at both shapes."""
    if not isinstance(exception_info, Mapping):
        return False
    if exception_info.get("raised_exception"):
        return True
    return any(
        isinstance(value, Mapping) and bool(value.get("raised_exception"))
        for value in exception_info.values()
    )


def build_outcome(
    table: str, checks: Iterable[Check], raw: Mapping[str, RawResult]
) -> ValidationOutcome:
    """Combine stripped results in suite order; errored critical/quarantine checks fail the run."""
    results: list[CheckResult] = []
    failed_rows: dict[str, list[str]] = {}
    critical: list[CheckResult] = []
    for check in checks:
        item = raw.get(check.id) or RawResult(False, True, 0, 0, ())
        result = CheckResult(
            check_id=check.id,
            table=table,
            category=check.category,
            severity=check.severity,
            evaluated=item.evaluated,
            failed=item.failed,
            success=item.success,
            explanation=check.explanation,
            errored=item.errored,
        )
        results.append(result)
        if item.errored:
            log.warning("check %s on %s could not run", check.id, table)
        if result.fails_run:
            critical.append(result)
        elif not result.success and check.severity == "quarantine":
            for row_hash in item.row_hashes:
                failed_rows.setdefault(row_hash, []).append(check.id)
    return ValidationOutcome(table, results, failed_rows, critical)
