"""DQ results and report on hand-made gov tables: worst checks, trends, small cells, offline."""

from __future__ import annotations

import re

import duckdb
import pandas as pd
import pytest

from warehouse.dq_report import (
    format_pass,
    format_trend,
    quarantine_by_rule,
    reconciliation,
    render_dq_report,
    worst_checks,
)

B1, B2, B3 = "20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"
R3 = B3 + "-replay-001"


def _dq(
    batch: str,
    check: str,
    failed: int,
    evaluated: int = 100,
    severity: str = "quarantine",
    category: str = "conformance",
    table: str = "lab",
) -> dict:
    return {
        "hospital": "east_liver",
        "batch_id": batch,
        "table": table,
        "check_id": check,
        "category": category,
        "severity": severity,
        "evaluated": evaluated,
        "failed": failed,
        "pass_rate": 1 - failed / evaluated,
        "success": failed == 0,
        "explanation": f"explains {check}",
        "run_at": "2026-01-03T00:00:00+00:00",
    }


def _q(batch: str, row: int, rule: str, open_: bool, released_by: str | None = None) -> dict:
    return {
        "hospital": "east_liver",
        "batch_id": batch,
        "table": "lab",
        "source_file": "lab.csv",
        "source_row": row,
        "row_hash": f"h{row}",
        "stage": "validate",
        "rule_id": rule,
        "reason": "reason",
        "payload": None,
        "origin_batch_id": batch.split("-replay-")[0],
        "released_by": released_by,
        "released_at": None,
        "open": open_,
    }


@pytest.fixture()
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA gov")
    dq = pd.DataFrame(
        [
            _dq(B1, "lab.code_mapped", 40),
            _dq(B2, "lab.code_mapped", 12),
            _dq(B3, "lab.code_mapped", 30),
            _dq(R3, "lab.code_mapped", 0, evaluated=30),  # replay: not in the trend
            _dq(B3, "lab.range_alt", 2, category="plausibility"),
            _dq(B3, "lab.row_hash_unique", 1, severity="critical"),
            _dq(B3, "lab.value_not_null", 0, category="completeness"),
            _dq(B1, "patient.sex_in_value_set", 7, table="patient"),
        ]
    )
    quarantine = pd.DataFrame(
        [_q(B3, n, "lab.code_mapped", False, R3) for n in range(1, 29)]
        + [_q(B3, 29, "lab.code_mapped", False), _q(B3, 30, "lab.code_mapped", False)]
        + [_q(R3, 29, "lab.code_mapped", True), _q(R3, 30, "lab.range_alt", True)]
    )
    recon = pd.DataFrame(
        {
            "hospital": "east_liver",
            "batch_id": [B3, R3],
            "table": "lab",
            "read": [100, 30],
            "loaded": [68, 28],
            "quarantined": [30, 2],
            "dropped": [2, 0],
            "balanced": True,
        }
    )
    for name, frame in (("dq_result", dq), ("quarantine", quarantine), ("reconciliation", recon)):
        con.register("_f", frame)
        con.execute(f"CREATE TABLE gov.{name} AS SELECT * FROM _f")
        con.unregister("_f")
    yield con
    con.close()


def test_worst_checks_critical_first_with_trend_and_open_rows(con) -> None:
    worst = worst_checks(con)
    assert list(worst["check_id"]) == [
        "lab.row_hash_unique",
        "lab.code_mapped",
        "patient.sex_in_value_set",
        "lab.range_alt",
    ]
    mapped = worst.set_index("check_id").loc["lab.code_mapped"]
    assert mapped["batch_id"] == B3 and mapped["failed"] == 30
    assert list(mapped["trend"]) == [40, 12, 30]
    assert mapped["open_rows"] == 1
    assert mapped["pass_rate"] == pytest.approx(0.70)
    assert format_trend(mapped["trend"]) == "40 → 12 → 30"
    assert list(worst_checks(con, "east_liver", last=2).iloc[1]["trend"]) == [12, 30]


def test_quarantine_counts_open_and_released_rows(con) -> None:
    counts = quarantine_by_rule(con).set_index("rule_id")
    assert counts.at["lab.code_mapped", "open_rows"] == 1
    assert counts.at["lab.code_mapped", "released_rows"] == 28
    assert counts.at["lab.range_alt", "open_rows"] == 1
    assert counts.at["lab.code_mapped", "explanation"] == "explains lab.code_mapped"
    recon = reconciliation(con)
    assert list(recon["kind"]) == ["sync", "replay"]


def test_pass_rate_never_reveals_a_small_count() -> None:
    row = pd.Series({"failed": 2, "evaluated": 100, "pass_rate": 0.98})
    assert format_pass(row) == "≥96.0"
    assert format_pass(pd.Series({"failed": 7, "evaluated": 10000, "pass_rate": 0.9993})) == "99.9"
    assert format_pass(pd.Series({"failed": 0, "evaluated": 10, "pass_rate": 1.0})) == "100.0"


def test_report_is_offline_grouped_and_small_cell_suppressed(con) -> None:
    text = render_dq_report(con)
    assert "<script" not in text and "<link" not in text and "http" not in text
    assert "@import" not in text and "url(" not in text
    assert not re.search(r'<td class="num">[0-4]</td>', text)
    assert '<td class="num">&lt;5</td>' in text
    assert '<td class="num">28</td>' in text  # released rows of lab.code_mapped
    assert text.index("<h4>completeness</h4>") < text.index("<h4>conformance</h4>")
    assert text.index("<h4>conformance</h4>") < text.index("<h4>plausibility</h4>")
    assert "explains lab.code_mapped" in text and "Reconciliation per batch" in text
    assert "Passing: <code>lab.value_not_null</code>" in text
    assert "40 → 12 → 30" in text
