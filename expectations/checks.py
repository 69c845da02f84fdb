"""Declarative data-quality checks: parse and vet the YAML suites under expectations/staging/."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from transforms.canonical import TABLES, columns_of
from transforms.errors import ConfigError

SUITE_DIR = Path(__file__).resolve().parent / "staging"
CATEGORIES = frozenset({"completeness", "conformance", "plausibility"})
SEVERITIES = frozenset({"critical", "quarantine", "warn"})
# Placeholders a suite may use as a whole kwarg value; resolved per run or per table.
RUN_PARAMETERS = frozenset({"run_date", "run_end_utc"})
CANONICAL_COLUMNS = "$canonical_columns"

_ID_PATTERN = re.compile(r"^(?P<table>[a-z_]+)\.[a-z0-9_]+$")
_EXPECTATION_PATTERN = re.compile(r"^expect_[a-z0-9_]+$")
_REQUIRED_KEYS = ("id", "category", "severity", "expectation", "kwargs", "explanation")


class SuiteError(ConfigError):
    """A suite file is malformed; raised at load time so a bad suite never runs."""


@dataclass(frozen=True)
class Check:
    """One expectation with its governance metadata; kwargs are GX-ready (placeholders resolved)."""

    id: str
    table: str
    category: str
    severity: str
    expectation: str
    explanation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    row_condition: str | None = None


def suite_path(table: str) -> Path:
    """Where the staging suite of a canonical table lives."""
    return SUITE_DIR / f"{table}.yaml"


def load_suite(table: str) -> list[Check]:
    """Checks of one canonical staging table, in file order; raises SuiteError if malformed."""
    return list(_load_suite_cached(table))


def load_all_suites() -> dict[str, list[Check]]:
    """Every canonical table's checks, keyed by table."""
    return {table: load_suite(table) for table in TABLES}


@cache
def _load_suite_cached(table: str) -> tuple[Check, ...]:
    if table not in TABLES:
        raise SuiteError(f"unknown canonical table {table!r}")
    path = suite_path(table)
    if not path.is_file():
        raise SuiteError(f"no suite for table {table!r} at {path}")
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if document.get("table") != table:
        raise SuiteError(f"{path.name}: 'table' must be {table!r}")
    entries = document.get("checks")
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{path.name}: 'checks' must be a non-empty list")
    checks = tuple(parse_check(table, entry, index) for index, entry in enumerate(entries))
    ids = [check.id for check in checks]
    duplicates = sorted({check_id for check_id in ids if ids.count(check_id) > 1})
    if duplicates:
        raise SuiteError(f"{path.name}: duplicate check ids {duplicates}")
    return checks


def parse_check(table: str, entry: Any, index: int) -> Check:
    """Vet one YAML entry and resolve its kwargs placeholders."""
    where = f"{table}.yaml check #{index}"
    if not isinstance(entry, dict):
        raise SuiteError(f"{where}: must be a mapping")
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise SuiteError(f"{where}: missing keys {missing}")
    unknown = sorted(set(entry) - set(_REQUIRED_KEYS) - {"row_condition"})
    if unknown:
        raise SuiteError(f"{where}: unknown keys {unknown}")
    match = _ID_PATTERN.match(str(entry["id"]))
    if match is None or match["table"] != table:
        raise SuiteError(f"{where}: id must look like '{table}.snake_case'")
    if entry["category"] not in CATEGORIES:
        raise SuiteError(f"{where}: category must be one of {sorted(CATEGORIES)}")
    if entry["severity"] not in SEVERITIES:
        raise SuiteError(f"{where}: severity must be one of {sorted(SEVERITIES)}")
    if not _EXPECTATION_PATTERN.match(str(entry["expectation"])):
        raise SuiteError(f"{where}: expectation must be a GX expectation name in snake case")
    if not isinstance(entry["kwargs"], dict):
        raise SuiteError(f"{where}: kwargs must be a mapping")
    explanation = entry["explanation"]
    if not isinstance(explanation, str) or not explanation.strip():
        raise SuiteError(f"{where}: explanation must be a sentence")
    row_condition = entry.get("row_condition")
    if row_condition is not None and not isinstance(row_condition, str):
        raise SuiteError(f"{where}: row_condition must be a pandas query string")
    return Check(
        id=entry["id"],
        table=table,
        category=entry["category"],
        severity=entry["severity"],
        expectation=entry["expectation"],
        explanation=" ".join(explanation.split()),
        kwargs={key: resolve_value(table, value, where) for key, value in entry["kwargs"].items()},
        row_condition=row_condition,
    )


def resolve_value(table: str, value: Any, where: str) -> Any:
    """Turn YAML placeholders and date literals into what GX compares against pandas columns."""
    if value == CANONICAL_COLUMNS:
        return [column.name for column in columns_of(table)]
    if isinstance(value, str) and value.startswith("$"):
        name = value[1:]
        if name not in RUN_PARAMETERS:
            raise SuiteError(f"{where}: unknown placeholder {value!r}")
        return {"$PARAMETER": name}
    if isinstance(value, dt.date):
        # Staging dates are datetime64 at local midnight; a Timestamp compares with them.
        return pd.Timestamp(value)
    return value
