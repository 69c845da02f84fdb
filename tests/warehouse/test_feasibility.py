"""Feasibility funnels on a small hand-built cohort: counts, optional steps, <5 suppression."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.warehouse.core_tables import make_core
from warehouse.cohorts import build_cohorts
from warehouse.feasibility import (
    CriteriaError,
    Criterion,
    criterion_sql,
    feasibility_rows,
    load_criteria,
    run_feasibility,
    suppress_count,
)

CRITERIA_DIR = Path(__file__).resolve().parents[2] / "warehouse" / "criteria"

# hospital, patient, person, histology, bclc, child-pugh, prior lines, afp
PATIENTS = [
    *[("h1", f"a{i}", f"P{i}", "hcc", "B", "A", 0, 500.0) for i in range(6)],  # 6 eligible
    ("h1", "a6", "P6", "hcc", "C", "A", 0, 10.0),  # eligible, AFP low
    ("h1", "a7", "P7", "hcc", "C", "B", 0, 900.0),  # Child-Pugh B
    ("h1", "a8", "P8", "hcc", "A", "A", 0, 900.0),  # BCLC A
    ("h1", "a9", "P9", "cholangiocarcinoma", "B", "A", 0, 900.0),
    ("h2", "b0", "P0", "hcc", "B", "A", 0, 450.0),  # same person as a0: total counts once
    ("h2", "b1", "Q1", "hcc", "C", "A", 1, 450.0),  # prior systemic line
    ("h2", "b2", "Q2", "hcc", "C", "A", 0, None),  # eligible, AFP unknown
]


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA cohort")
    con.execute(
        """CREATE TABLE cohort.liver_patient (hospital VARCHAR, patient_id VARCHAR,
        person_key VARCHAR, histology VARCHAR, bclc_stage VARCHAR, child_pugh_class VARCHAR,
        prior_systemic_lines BIGINT, afp_ng_ml DOUBLE, age_at_index INTEGER)"""
    )
    con.executemany(
        "INSERT INTO cohort.liver_patient VALUES (?, ?, ?, ?, ?, ?, ?, ?, 60)", PATIENTS
    )
    return con


def test_shipped_hcc_criteria_funnel(con) -> None:
    criteria = load_criteria(CRITERIA_DIR / "hcc_bclc_bc_child_a.yaml")
    result = run_feasibility(con, criteria)
    assert result.hospitals == ["h1", "h2"]
    steps = {s.name: (s.counts, s.total) for s in result.steps}
    assert steps["All liver_patient patients"] == ({"h1": 10, "h2": 3}, 12)
    assert steps["Hepatocellular carcinoma"] == ({"h1": 9, "h2": 3}, 11)
    assert steps["BCLC stage B or C"] == ({"h1": 8, "h2": 3}, 10)
    assert steps["Child-Pugh class A"] == ({"h1": 7, "h2": 3}, 9)
    assert steps["No prior systemic therapy"] == ({"h1": 7, "h2": 2}, 8)
    # the optional AFP step is applied on top of the required ones, never to the headline
    assert steps["Baseline AFP >= 400 ng/mL (optional)"] == ({"h1": 6, "h2": 1}, 6)
    assert result.headline.name == "No prior systemic therapy"
    assert result.headline.total == 8


def test_rows_suppress_small_cells_everywhere(con) -> None:
    result = run_feasibility(con, load_criteria(CRITERIA_DIR / "hcc_bclc_bc_child_a.yaml"))
    rows = {row[0]: row[1:] for row in feasibility_rows(result)}
    assert rows["All liver_patient patients"] == ["10", "<5", "12"]
    assert rows["No prior systemic therapy"] == ["7", "<5", "8"]
    assert rows["Baseline AFP >= 400 ng/mL (optional)"] == ["6", "<5", "6"]
    for cells in rows.values():
        assert not any(cell in {"0", "1", "2", "3", "4"} for cell in cells)


def test_totals_are_suppressed_too(con) -> None:
    con.execute("DELETE FROM cohort.liver_patient WHERE hospital = 'h1'")
    result = run_feasibility(con, load_criteria(CRITERIA_DIR / "hcc_bclc_bc_child_a.yaml"))
    assert result.hospitals == ["h2"]  # no core.patient here: hospitals come from the cohort
    assert feasibility_rows(result)[-2] == ["No prior systemic therapy", "<5", "<5"]
    assert result.headline.total == 2


@pytest.mark.parametrize(("count", "shown"), [(0, "<5"), (1, "<5"), (4, "<5"), (5, "5")])
def test_suppress_count(count, shown) -> None:
    assert suppress_count(count) == shown


def test_unknown_column_names_the_criterion() -> None:
    with pytest.raises(CriteriaError, match=r"'Liver size'.*unknown column 'liver_cm'"):
        criterion_sql(Criterion("Liver size", "liver_cm", "gt", 10), {"histology"})


def test_unknown_operator_names_the_criterion(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "cohort: liver_patient\ncriteria:\n"
        "  - {name: Young, column: age_at_index, op: younger_than, value: 40}\n",
        encoding="utf-8",
    )
    with pytest.raises(CriteriaError, match=r"'Young'.*unknown operator 'younger_than'"):
        load_criteria(path)


def test_unknown_column_in_file_fails_at_run(con, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "cohort: liver_patient\ncriteria:\n"
        "  - {name: Tumour size, column: size, op: lt, value: 5}\n",
        encoding="utf-8",
    )
    with pytest.raises(CriteriaError, match="'Tumour size'"):
        run_feasibility(con, load_criteria(path))


def test_operators_build_bound_sql() -> None:
    columns = {"ecog", "stage_group", "afp_ng_ml"}
    assert criterion_sql(Criterion("e", "ecog", "between", [0, 1]), columns) == (
        '"ecog" BETWEEN ? AND ?',
        [0, 1],
    )
    assert criterion_sql(Criterion("s", "stage_group", "not_in", ["IA", "IB"]), columns) == (
        '"stage_group" NOT IN (?, ?)',
        ["IA", "IB"],
    )
    assert criterion_sql(Criterion("a", "afp_ng_ml", "not_null"), columns) == (
        '"afp_ng_ml" IS NOT NULL',
        [],
    )


@pytest.mark.parametrize("name", ["hcc_bclc_bc_child_a", "egfr_nsclc_first_line"])
def test_shipped_criteria_match_the_marts(name) -> None:
    """Every shipped criterion names a real column of the cohort mart it targets."""
    con = make_core()
    build_cohorts(con)
    result = run_feasibility(con, load_criteria(CRITERIA_DIR / f"{name}.yaml"))
    assert result.headline.total == 0
    assert all(cell == "<5" for row in feasibility_rows(result) for cell in row[1:])
