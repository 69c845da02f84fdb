"""Run the benchmark: every step in a child process, per scale, then the naive baseline."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.scales import Scale

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
# The stages of one sync measured one at a time, in pipeline order, on the same home.
# Batches per hospital for the history step: a year of nightly syncs.
HISTORY_BATCHES = 365
ISOLATED = ("land", "extract", "stage", "validate", "fhir", "finish", "build", "flatten")


def child_env(home: Path, work: Path) -> dict[str, str]:
    """Environment of a step: its own WALNUT_HOME, demo key, and cached bytecode.

    Bytecode is cached under the work folder (never in the tree or the venv): with
    PYTHONDONTWRITEBYTECODE every child would recompile Great Expectations (~25 s).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env |= {
        "WALNUT_HOME": str(home),
        "WALNUT_DEMO": "1",
        "PYTHONPYCACHEPREFIX": str(work / "pycache"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("WALNUT_SOURCES", None)
    return env


def run_child(step: str, home: Path, work: Path, **kwargs: Any) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its JSON line plus the wall time seen from here."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "benchmarks.child", step, json.dumps(kwargs)],
        cwd=REPO,
        env=child_env(home, work),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark step {step} failed (exit {done.returncode}):\n{tail}")
    result = json.loads(lines[-1].removeprefix("BENCH "))
    result["process_seconds"] = round(wall, 3)
    return _with_rates(result)


def _with_rates(result: dict[str, Any]) -> dict[str, Any]:
    seconds = result.get("inner_seconds") or result["seconds"]
    if result.get("source_rows"):
        result["rows_per_s"] = round(result["source_rows"] / seconds)
    if result.get("resources"):
        result["resources_per_s"] = round(result["resources"] / seconds)
    return result


def run_scale(
    scale: Scale, work: Path, *, gx: bool, naive: bool, history: int = 0
) -> dict[str, Any]:
    """Generate a scale, measure each stage alone, then full sync + build and a 1 % delta;
    with `history`, the per-night costs after that many batches per hospital."""
    home = work / scale.name / "stages"
    e2e = work / scale.name / "end_to_end"
    for folder in (home, e2e):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    out: dict[str, Any] = {"patients_per_hospital": scale.patients}
    log.info("%s: generating %d patients per hospital", scale.name, scale.patients)
    out["generate"] = run_child("generate", home, work, patients=scale.patients)
    shutil.copytree(home / "sources", e2e / "sources")
    stages: dict[str, Any] = {}
    for step in ISOLATED:
        log.info("%s: %s", scale.name, step)
        stages[step] = run_child(step, home, work)
    out["stages"] = stages
    if gx:
        log.info("%s: GX on 1M rows", scale.name)
        out["gx_million"] = run_child("gx_million", home, work)
    if naive:
        log.info("%s: naive baseline", scale.name)
        out["naive"] = run_child("naive", home, work)
    log.info("%s: full sync + build", scale.name)
    out["full"] = nightly(e2e, work)
    out["delta_rows"] = run_child("make_delta", e2e, work)["source_rows"]
    log.info("%s: nightly delta sync + build", scale.name)
    out["delta"] = nightly(e2e, work)
    out["delta"]["ratio_to_full"] = round(out["delta"]["seconds"] / out["full"]["seconds"], 4)
    if history:
        log.info("%s: a year of nightlies (%d batches per hospital)", scale.name, history)
        out["history"] = run_child("history", e2e, work, batches=history)
    return out


def nightly(home: Path, work: Path) -> dict[str, Any]:
    """`walnut sync --all` then `walnut build`, each in its own process as the CLI and the
    DAGs run them. The time is both processes' wall time as seen from here (interpreter start
    included); CPU adds up; peak RSS is the larger of the two, and "workers" the largest of
    their child processes (the sync's hospital processes and FHIR workers, the build's linkage
    scorer)."""
    sync = run_child("sync_all", home, work)
    build = run_child("build_all", home, work)
    both = {
        "source_rows": sync["source_rows"],
        "resources": sync["resources"],
        "tables": build["tables"],
        "seconds": round(sync["process_seconds"] + build["process_seconds"], 3),
        "cpu_seconds": round(sync["cpu_seconds"] + build["cpu_seconds"], 3),
        "peak_rss_mb": max(sync["peak_rss_mb"], build["peak_rss_mb"]),
        "workers_peak_rss_mb": max(sync["workers_peak_rss_mb"], build["workers_peak_rss_mb"]),
        "sync": sync,
        "build": build,
    }
    return _with_rates(both)


def speedups(small: dict[str, Any]) -> dict[str, float]:
    """Real pipeline over naive baseline, per stage, as a throughput ratio (rows/s over rows/s)."""
    naive = small["naive"]
    stages = small["stages"]
    ratios: dict[str, float] = {}
    for stage in ("stage", "validate", "fhir"):
        naive_rate = naive["source_rows"] / naive[f"{stage}_seconds"]
        ratios[stage] = round(
            stages[stage]["source_rows"] / stages[stage]["seconds"] / naive_rate, 1
        )
    naive_total = sum(naive[f"{s}_seconds"] for s in ("stage", "validate", "fhir"))
    real_total = sum(stages[s]["seconds"] for s in ("stage", "validate", "fhir"))
    ratios["stage+validate+fhir"] = round(
        (stages["stage"]["source_rows"] / real_total) / (naive["source_rows"] / naive_total), 1
    )
    return ratios


def run_benchmark(
    scales: list[Scale],
    work: Path,
    naive: bool = True,
    gx_million: bool = True,
    history: int = HISTORY_BATCHES,
) -> dict[str, Any]:
    """All scales; GX 1M rows, the naive baseline and a year of nightlies once, on the first
    (smallest) scale."""
    work.mkdir(parents=True, exist_ok=True)
    run_child("warm_up", work / "warm_up", work)  # compiles and caches the bytecode
    results: dict[str, Any] = {"imports": run_child("warm_up", work / "warm_up", work)}
    for index, scale in enumerate(scales):
        first = index == 0
        results[scale.name] = run_scale(
            scale,
            work,
            gx=gx_million and first,
            naive=naive and first,
            history=history if first else 0,
        )
    imports = results.pop("imports")
    report: dict[str, Any] = {"imports": imports, "scales": results}
    first = results[scales[0].name]
    if "naive" in first:
        report["speedup_vs_naive"] = speedups(first)
    return report
