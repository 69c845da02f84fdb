"""Cohort marts: the SQL files in warehouse/cohorts/ run over core.* into schema `cohort`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import yaml

from transforms.errors import ConfigError

log = logging.getLogger(__name__)

COHORTS_DIR = Path(__file__).parent / "cohorts"


@dataclass(frozen=True)
class Mart:
    """One cohort table: its SQL file, documented grain and columns (name -> meaning)."""

    name: str
    grain: str
    columns: dict[str, str]

    @property
    def sql_path(self) -> Path:
        return COHORTS_DIR / f"{self.name}.sql"


@dataclass(frozen=True)
class CohortPlan:
    """Helper SQL files (session-only views) and marts, in build order."""

    helpers: tuple[str, ...]
    marts: tuple[Mart, ...]


@cache
def load_cohort_plan() -> CohortPlan:
    """Parse warehouse/cohorts/cohorts.yaml: the documented build order, grains and columns."""
    spec = yaml.safe_load((COHORTS_DIR / "cohorts.yaml").read_text(encoding="utf-8"))
    marts = tuple(
        Mart(name=m["name"], grain=m["grain"], columns=dict(m["columns"])) for m in spec["tables"]
    )
    return CohortPlan(helpers=tuple(spec.get("helpers", [])), marts=marts)


def _run_file(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"cohort SQL file missing: {path.name} (listed in cohorts.yaml)")
    con.execute(path.read_text(encoding="utf-8"))


def _check_columns(con: duckdb.DuckDBPyConnection, mart: Mart) -> None:
    """A mart whose columns drift from cohorts.yaml fails the build: the YAML is the contract."""
    actual = [row[0] for row in con.execute(f"DESCRIBE cohort.{mart.name}").fetchall()]
    if actual != list(mart.columns):
        missing = sorted(set(mart.columns) - set(actual))
        extra = sorted(set(actual) - set(mart.columns))
        raise ConfigError(
            f"cohort.{mart.name} columns differ from cohorts.yaml "
            f"(missing {missing}, undocumented {extra}, or a different order)"
        )


def build_cohorts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Create (or replace) every cohort.* mart from the core.* tables on `con`; row counts.

    Files run in cohorts.yaml order: helpers (TEMP views), line_of_therapy, liver_patient,
    lung_patient, survival (each mart may read the ones before it).
    """
    plan = load_cohort_plan()
    con.execute("CREATE SCHEMA IF NOT EXISTS cohort")
    for helper in plan.helpers:
        _run_file(con, COHORTS_DIR / f"{helper}.sql")
    counts: dict[str, int] = {}
    for mart in plan.marts:
        _run_file(con, mart.sql_path)
        _check_columns(con, mart)
        table = f"cohort.{mart.name}"
        counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        log.info("built %s: %d rows", table, counts[table])
    return counts
