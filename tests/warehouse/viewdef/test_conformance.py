"""SQL-on-FHIR v2 conformance suite: every case run, reported, and the shareable pass rate gated."""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pytest

from warehouse.viewdef import ViewDefinitionError, load_resources, run_view

ROOT = Path(__file__).resolve().parents[3]
SUITE = Path("sql-on-fhir-v2") / "tests"
MIN_SHAREABLE_PASS_RATE = 0.95


def _suite_dir_at_collection() -> Path:
    """Same rule as the `shared_data` fixture, needed to parametrize one test per case."""
    data = Path(os.environ.get("WALNUT_TEST_DATA", ROOT.parent / "shared" / "data"))
    return data / SUITE


def _case_ids() -> list[str]:
    suite = _suite_dir_at_collection()
    if not suite.is_dir():
        return ["suite-missing"]
    return [f"{path.name}::{case['title']}"
            for path in sorted(suite.glob("*.json"))
            for case in json.loads(path.read_text(encoding="utf-8"))["tests"]]


def _normalize(value: object) -> object:
    """Make values comparable: numbers as rounded floats, lists as tuples."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return round(float(value), 9)
    if isinstance(value, list | tuple):
        return tuple(_normalize(v) for v in value)
    return json.dumps(value, sort_keys=True)


def _rows_key(rows: list[dict], columns: list[str]) -> list[str]:
    return sorted(repr(tuple(_normalize(row.get(c)) for c in columns)) for row in rows)


def check_case(con: duckdb.DuckDBPyConnection, case: dict) -> tuple[bool, str | None]:
    """Run one case against table `src`; return (passed, reason when failed)."""
    try:
        table = run_view(con, case["view"], "src")
    except ViewDefinitionError as exc:
        if case.get("expectError"):
            return True, None
        return False, f"raised: {exc}"
    if case.get("expectError"):
        return False, "expected an error, got rows"
    if "expectCount" in case:
        ok = table.num_rows == case["expectCount"]
        return ok, None if ok else f"expected {case['expectCount']} rows, got {table.num_rows}"
    columns = table.column_names
    if "expectColumns" in case and columns != case["expectColumns"]:
        return False, f"columns {columns} != expected {case['expectColumns']}"
    expected = case["expect"]
    expected_columns = {c for row in expected for c in row}
    if expected and expected_columns != set(columns):
        return False, f"columns {sorted(columns)} != expected {sorted(expected_columns)}"
    actual = table.to_pylist()
    if _rows_key(actual, columns) != _rows_key(expected, columns):
        return False, f"rows differ: got {actual}, expected {expected}"
    return True, None


def _report_dir() -> Path:
    home = os.environ.get("WALNUT_HOME")
    return Path(home) / "reports" if home else ROOT / "var" / "reports"


@pytest.fixture(scope="session")
def sof_results(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run every case once; write the spec's test_report.json; return results by case id."""
    results: dict[str, dict] = {}
    report: dict[str, dict] = {}
    for path in sorted((shared_data / SUITE).glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        con = duckdb.connect()
        load_resources(con, suite["resources"], "src")
        entries = []
        for case in suite["tests"]:
            passed, reason = check_case(con, case)
            tags = case.get("tags") or suite.get("tags") or ["untagged"]
            results[f"{path.name}::{case['title']}"] = {
                "passed": passed, "reason": reason, "tags": tags}
            result: dict = {"passed": passed}
            if reason:
                result["error"] = reason
            entries.append({"name": case["title"], "result": result})
        con.close()
        report[path.name] = {"tests": entries}
    text = json.dumps(report, indent=2)
    (tmp_path_factory.mktemp("sof") / "test_report.json").write_text(text, encoding="utf-8")
    out_dir = _report_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sof_test_report.json").write_text(text, encoding="utf-8")
    return results


@pytest.mark.parametrize("case_id", _case_ids())
def test_case(sof_results: dict, case_id: str) -> None:
    """One visible test per conformance case."""
    assert case_id in sof_results, f"case {case_id} was not run"
    result = sof_results[case_id]
    assert result["passed"], f"{case_id} [{', '.join(result['tags'])}]: {result['reason']}"


def test_shareable_pass_rate(sof_results: dict) -> None:
    """At least 95 % of shareable cases pass; every case is counted and failures are listed."""
    by_tag: dict[str, Counter] = defaultdict(Counter)
    for result in sof_results.values():
        for tag in result["tags"]:
            by_tag[tag]["passed" if result["passed"] else "failed"] += 1
    for tag, counts in sorted(by_tag.items()):
        total = counts["passed"] + counts["failed"]
        print(f"{tag}: {counts['passed']}/{total} passed")
    for case_id, result in sorted(sof_results.items()):
        if not result["passed"]:
            print(f"FAILED {case_id} [{', '.join(result['tags'])}]: {result['reason']}")
    shareable = by_tag["shareable"]
    total = shareable["passed"] + shareable["failed"]
    assert total > 0, "no shareable cases found"
    assert shareable["passed"] / total >= MIN_SHAREABLE_PASS_RATE
