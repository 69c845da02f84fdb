"""Smoke runs of the benchmark harness: it measures in child processes and writes its report.

No timed assertions: benchmarks are not tests. The fast test runs one real child step and the
report code; the slow one runs the whole harness at the smoke scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import markdown, stage_table, target_rows, update_docs, write_results
from benchmarks.run import run_benchmark, run_child, speedups
from benchmarks.scales import SCALES, selected_scales


def _metrics(**extra: float) -> dict:
    base = {"seconds": 2.0, "cpu_seconds": 3.0, "peak_rss_mb": 300.0, "workers_peak_rss_mb": 0}
    return base | extra


def _report() -> dict:
    stages = {
        step: _metrics(source_rows=1000, resources=1500, resources_per_s=750, rows_per_s=500)
        for step in ("land", "extract", "stage", "validate", "fhir", "finish", "build")
    }
    stages["flatten"] = _metrics(resources=1500, resources_per_s=300_000, inner_seconds=0.005)
    scale = {
        "stages": stages,
        "full": _metrics(seconds=10.0, source_rows=1000, resources=1500, peak_rss_mb=400),
        "delta": _metrics(seconds=1.0, source_rows=10, resources=15, ratio_to_full=0.1),
        "delta_rows": 10,
    }
    small = scale | {
        "naive": {
            "source_rows": 100,
            "stage_seconds": 10.0,
            "validate_seconds": 5.0,
            "fhir_seconds": 1.0,
        },
        "gx_million": _metrics(source_rows=1_000_000, inner_seconds=4.0),
    }
    medium = scale | {"full": scale["full"] | {"peak_rss_mb": 460}}
    return {"imports": {"seconds": 4.2}, "scales": {"small": small, "medium": medium}}


def test_scales_from_bench_scale() -> None:
    assert [s.name for s in selected_scales({})] == ["small", "medium"]
    assert [s.name for s in selected_scales({"BENCH_SCALE": "large"})][-1] == "large"
    assert [s.name for s in selected_scales({"BENCH_SCALE": "smoke"})] == ["smoke"]
    assert [round(SCALES[n].approx_rows, -4) for n in ("small", "medium", "large")] == [
        10_000,
        100_000,
        1_000_000,
    ]
    with pytest.raises(ValueError, match="unknown scale"):
        selected_scales({"BENCH_SCALE": "huge"})


def test_speedup_is_a_throughput_ratio() -> None:
    ratios = speedups(_report()["scales"]["small"])
    # real: 1000 rows in 2 s = 500 rows/s; naive staging: 100 rows in 10 s = 10 rows/s
    assert ratios["stage"] == 50.0
    assert ratios["validate"] == 25.0
    assert ratios["fhir"] == 5.0
    assert ratios["stage+validate+fhir"] == pytest.approx((1000 / 6) / (100 / 16), abs=0.1)


def test_targets_and_tables(tmp_path: Path) -> None:
    report = _report()
    report["speedup_vs_naive"] = speedups(report["scales"]["small"])
    timings = ("known_patients", "name_keys", "gov")
    history = {f"{t}_{how}_s": 0.5 for t in timings for how in ("every_batch", "cached")}
    report["scales"]["small"]["history"] = history | {
        "batches": 1095,
        "hospitals": 3,
        "gov_incremental_s": 0.04,
    }
    rows = {t: (m, ok) for t, m, ok in target_rows(report)}
    assert rows["end to end ≥ 10,000 FHIR resources/s"] == (
        "150/s (medium, 1,500 resources)",
        "**no**",
    )
    assert rows["1 % delta ≤ 5 % of full load"][1] == "**no**"
    assert rows["RSS growth small → medium < 20 %"] == ("400 → 460 MB (+15%)", "yes")
    assert rows["flattening ≥ 200,000 resources/s"][1] == "yes"
    assert rows["GX on a 1M-row staging table < 5 s"] == ("4.0 s", "yes")
    table = stage_table(report)
    assert table.count("\n| small |") == 11 and table.count("\n| medium |") == 10
    machine = {
        "nproc": 2,
        "cpu": "test cpu",
        "python": "3.11",
        "load_average": [0.1],
        "memory": "m",
    }
    path = write_results(report | {"machine": machine}, tmp_path / "results")
    assert json.loads(path.read_text())["scales"]["small"]["delta_rows"] == 10
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nhand-written notes\n", encoding="utf-8")
    update_docs(docs, markdown(report, machine, path))
    update_docs(docs, markdown(report, machine, path))
    text = docs.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written notes\n")
    assert text.count("<!-- bench:begin -->") == 1 and "×50.0" in text and "4.2 s" in text
    assert "After a year of nightlies (365 batches per hospital" in text
    assert "gov tables 0.50 s in full, 0.04 s incremental" in text


def test_a_step_runs_in_a_child_and_reports_rss(tmp_path: Path) -> None:
    result = run_child("generate", tmp_path / "home", tmp_path, patients=2)
    assert result["step"] == "generate"
    assert result["source_rows"] > 50
    assert result["peak_rss_mb"] > 20 and result["rows_per_s"] > 0
    assert (tmp_path / "home" / "sources" / "east_liver" / "检验.csv").is_file()


@pytest.mark.slow
def test_whole_harness_at_smoke_scale(tmp_path: Path) -> None:
    """Every stage, the full run and the delta; the 1M-row GX run and the naive baseline are
    left to `make bench` (minutes of CPU that prove nothing more about the harness)."""
    report = run_benchmark([SCALES["smoke"]], tmp_path, naive=False, gx_million=False, history=4)
    smoke = report["scales"]["smoke"]
    history = smoke["history"]
    assert (history["batches"], history["hospitals"]) == (12, 3)
    assert all(v >= 0 for k, v in history.items() if k.endswith("_s"))
    full = smoke["full"]
    assert full["source_rows"] == smoke["stages"]["stage"]["source_rows"] > 500
    assert full["resources"] == smoke["stages"]["fhir"]["resources"] > 500
    assert 0 < smoke["delta"]["source_rows"] < full["source_rows"] / 10
    assert smoke["stages"]["flatten"]["resources"] == full["resources"]
    # sync and build ran as two processes, like `walnut sync --all` then `walnut build`
    assert full["build"]["tables"] > 10 and full["sync"]["step"] == "sync_all"
    assert full["peak_rss_mb"] == max(full["sync"]["peak_rss_mb"], full["build"]["peak_rss_mb"])
    assert "gx_million" not in smoke and "speedup_vs_naive" not in report
