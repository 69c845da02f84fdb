"""Trial feasibility: patients per hospital meeting YAML criteria on a cohort mart, as a funnel.

A criteria file names a cohort mart (liver_patient or lung_patient) and an ordered list of
criteria, each `{name, column, op, value}`. Required criteria are applied cumulatively; the
count after the last one is the headline. A criterion with `optional: true` is not part of the
headline: it is reported as its own funnel step, applied on top of all required criteria, so a
trial team sees what an optional condition (e.g. AFP >= 400 ng/mL) would cost.

Counts leave the warehouse only through `suppress_count`: any count under 5 reads `<5`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from transforms.errors import ConfigError

log = logging.getLogger(__name__)

CRITERIA_DIR = Path(__file__).parent / "criteria"
COHORT_TABLES = ("liver_patient", "lung_patient")
SMALL_CELL = 5
# op -> SQL comparison for scalar operators; in/not_in/between/is_null/not_null are built apart.
SCALAR_OPERATORS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
OPERATORS = (*SCALAR_OPERATORS, "in", "not_in", "between", "is_null", "not_null")


class CriteriaError(ConfigError):
    """A criteria file is malformed or names an unknown column or operator."""


@dataclass(frozen=True)
class Criterion:
    name: str
    column: str
    op: str
    value: Any = None
    optional: bool = False


@dataclass(frozen=True)
class Criteria:
    name: str
    cohort: str
    criteria: tuple[Criterion, ...]
    description: str = ""


@dataclass(frozen=True)
class FunnelStep:
    """Patients left after a step: per hospital, and in total (distinct persons)."""

    name: str
    optional: bool
    counts: dict[str, int]
    total: int


@dataclass
class FeasibilityResult:
    criteria: Criteria
    hospitals: list[str]
    steps: list[FunnelStep] = field(default_factory=list)

    @property
    def headline(self) -> FunnelStep:
        """The count after every required criterion (optional steps excluded)."""
        return [s for s in self.steps if not s.optional][-1]


def suppress_count(count: int) -> str:
    """Small-cell rule for anything leaving the warehouse: counts under 5 read `<5`."""
    return "<5" if count < SMALL_CELL else str(count)


def resolve_criteria(name: str) -> Path:
    """A criteria file path as given, else a shipped one: `hcc_bclc_bc_child_a` or its .yaml."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CRITERIA_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in CRITERIA_DIR.glob("*.yaml"))
    raise CriteriaError(f"criteria file {name!r} not found; shipped criteria: {available}")


def load_criteria(path: Path) -> Criteria:
    """Parse and check a criteria YAML file; CriteriaError names the file and criterion."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CriteriaError(f"{path.name}: cannot read criteria ({type(exc).__name__})") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("criteria"), list):
        raise CriteriaError(f"{path.name}: expected a mapping with a 'criteria' list")
    cohort = spec.get("cohort")
    if cohort not in COHORT_TABLES:
        raise CriteriaError(f"{path.name}: cohort must be one of {list(COHORT_TABLES)}")
    items = []
    for position, item in enumerate(spec["criteria"], start=1):
        if not isinstance(item, dict) or not item.get("column") or not item.get("op"):
            raise CriteriaError(f"{path.name}: criterion {position} needs 'column' and 'op'")
        criterion = Criterion(
            name=str(item.get("name") or f"criterion {position}"),
            column=str(item["column"]),
            op=str(item["op"]),
            value=item.get("value"),
            optional=bool(item.get("optional", False)),
        )
        _check_value(criterion)
        items.append(criterion)
    if not any(not c.optional for c in items):
        log.info("%s: no required criteria; the headline is the whole cohort", path.name)
    return Criteria(
        name=str(spec.get("name") or path.stem),
        cohort=cohort,
        criteria=tuple(items),
        description=str(spec.get("description") or ""),
    )


def _check_value(criterion: Criterion) -> None:
    op, value = criterion.op, criterion.value
    if op not in OPERATORS:
        raise CriteriaError(
            f"criterion {criterion.name!r}: unknown operator {op!r}; use one of {list(OPERATORS)}"
        )
    if op in ("in", "not_in") and not (isinstance(value, list) and value):
        raise CriteriaError(f"criterion {criterion.name!r}: {op} needs a non-empty list value")
    if op == "between" and not (isinstance(value, list) and len(value) == 2):
        raise CriteriaError(f"criterion {criterion.name!r}: between needs a [low, high] value")
    if op in SCALAR_OPERATORS and (value is None or isinstance(value, list | dict)):
        raise CriteriaError(f"criterion {criterion.name!r}: {op} needs a single value")


def criterion_sql(criterion: Criterion, columns: set[str]) -> tuple[str, list[Any]]:
    """SQL predicate and bound parameters; the column is checked against the mart's columns."""
    if criterion.column not in columns:
        raise CriteriaError(
            f"criterion {criterion.name!r}: unknown column {criterion.column!r}; "
            f"available: {sorted(columns)}"
        )
    _check_value(criterion)
    column = f'"{criterion.column}"'
    op, value = criterion.op, criterion.value
    if op in SCALAR_OPERATORS:
        return f"{column} {SCALAR_OPERATORS[op]} ?", [value]
    if op in ("in", "not_in"):
        marks = ", ".join("?" for _ in value)
        negate = "NOT " if op == "not_in" else ""
        return f"{column} {negate}IN ({marks})", list(value)
    if op == "between":
        return f"{column} BETWEEN ? AND ?", list(value)
    return f"{column} IS {'' if op == 'is_null' else 'NOT '}NULL", []


def _hospitals(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """Hospitals of the cohort, plus every loaded hospital so an empty one still shows (<5)."""
    rows = con.execute(f"SELECT DISTINCT hospital FROM {table}").fetchall()
    names = {r[0] for r in rows}
    try:
        names |= {
            r[0] for r in con.execute("SELECT DISTINCT hospital FROM core.patient").fetchall()
        }
    except duckdb.CatalogException:
        log.info("no core.patient table; hospitals taken from %s", table)
    return sorted(n for n in names if n)


def _count_step(
    con: duckdb.DuckDBPyConnection, table: str, where: list[str], params: list[Any]
) -> tuple[dict[str, int], int]:
    clause = " AND ".join(f"({w})" for w in where) or "TRUE"
    per_hospital = con.execute(
        f"SELECT hospital, count(*) FROM {table} WHERE {clause} GROUP BY hospital", params
    ).fetchall()
    # A person treated at two hospitals counts once in the total (person_key links them).
    total = con.execute(
        f"SELECT count(DISTINCT coalesce(person_key, hospital || ':' || patient_id)) "
        f"FROM {table} WHERE {clause}",
        params,
    ).fetchall()[0][0]
    return {h: n for h, n in per_hospital}, total


def run_feasibility(con: duckdb.DuckDBPyConnection, criteria: Criteria) -> FeasibilityResult:
    """The attrition funnel of `criteria` over cohort.<cohort> on `con` (raw counts)."""
    table = f"cohort.{criteria.cohort}"
    try:
        described = con.execute(f"DESCRIBE {table}").fetchall()
    except duckdb.CatalogException as exc:
        raise CriteriaError(
            f"{table} does not exist; run `walnut build` to create the cohort marts"
        ) from exc
    columns = {row[0] for row in described}
    result = FeasibilityResult(criteria=criteria, hospitals=_hospitals(con, table))
    counts, total = _count_step(con, table, [], [])
    result.steps.append(FunnelStep(f"All {criteria.cohort} patients", False, counts, total))
    where: list[str] = []
    params: list[Any] = []
    for criterion in criteria.criteria:
        if criterion.optional:
            continue
        sql, values = criterion_sql(criterion, columns)
        where.append(sql)
        params.extend(values)
        counts, total = _count_step(con, table, where, params)
        result.steps.append(FunnelStep(criterion.name, False, counts, total))
    for criterion in criteria.criteria:
        if not criterion.optional:
            continue
        sql, values = criterion_sql(criterion, columns)
        counts, total = _count_step(con, table, [*where, sql], [*params, *values])
        result.steps.append(FunnelStep(f"{criterion.name} (optional)", True, counts, total))
    log.info("feasibility %s: %d step(s)", criteria.name, len(result.steps))
    return result


def feasibility_rows(result: FeasibilityResult) -> list[list[str]]:
    """Funnel as display rows [step, per-hospital..., total], every count suppressed (<5)."""
    rows = []
    for step in result.steps:
        cells = [suppress_count(step.counts.get(h, 0)) for h in result.hospitals]
        rows.append([step.name, *cells, suppress_count(step.total)])
    return rows
