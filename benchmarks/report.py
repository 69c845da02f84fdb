"""Benchmark results as JSON (benchmarks/results/<date>.json) and a Markdown table in the docs."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
STAGE_LABELS = {
    "land": "land (copy + sha256)",
    "extract": "extract (readers only)",
    "stage": "stage (extract + standardise)",
    "validate": "validate (GX suites)",
    "fhir": "FHIR map + validate",
    "finish": "deletions + reconcile",
    "build": "warehouse build",
    "flatten": "ViewDefinition flatten",
}


def describe_machine() -> dict[str, Any]:
    """nproc, CPU model, memory (`free -h`) and load: benchmarks compare only on one machine."""
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False)  # noqa: S607
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "memory": free.stdout.strip(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - read-only git query
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def write_results(report: dict[str, Any], results_dir: Path) -> Path:
    """benchmarks/results/<date>.json (a second run on the same day gets a time suffix)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    path = results_dir / f"{now:%Y-%m-%d}.json"
    if path.exists():
        path = results_dir / f"{now:%Y-%m-%dT%H%M%S}.json"
    report = {"date": now.isoformat(timespec="seconds"), "commit": _commit()} | report
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def stage_table(report: dict[str, Any]) -> str:
    """Markdown: one row per scale and stage with rows/s, resources/s, wall and peak RSS."""
    lines = [
        "| scale | step | source rows | rows/s | FHIR resources | resources/s | wall s | "
        "CPU s | peak RSS MB (workers) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, scale in report["scales"].items():
        steps = [(STAGE_LABELS[k], v) for k, v in scale["stages"].items()]
        steps += [("**full sync + build**", scale["full"])]
        steps += [(f"**1 % delta sync + build** ({scale['delta_rows']} rows)", scale["delta"])]
        if "gx_million" in scale:
            steps.append(("GX lab suite, 1M-row frame", scale["gx_million"]))
        for label, m in steps:
            seconds = m.get("inner_seconds") or m["seconds"]
            lines.append(
                f"| {name} | {label} | {_num(m.get('source_rows'))} | {_num(m.get('rows_per_s'))} "
                f"| {_num(m.get('resources'))} | {_num(m.get('resources_per_s'))} "
                f"| {_num(seconds, 2)} | {_num(m.get('cpu_seconds'), 1)} "
                f"| {_num(m['peak_rss_mb'])} ({_num(m['workers_peak_rss_mb'])}) |"
            )
    return "\n".join(lines)


def target_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met?) for each target of issue 8 that this run measured."""
    scales = report["scales"]
    names = list(scales)
    biggest = scales[names[-1]]
    rows: list[tuple[str, str, str]] = []

    def verdict(ok: bool) -> str:
        return "yes" if ok else "**no**"

    full = biggest["full"]
    rate = full["resources"] / full["seconds"]
    rows.append(
        (
            "end to end ≥ 10,000 FHIR resources/s",
            f"{rate:,.0f}/s ({names[-1]}, {full['resources']:,} resources)",
            verdict(rate >= 10_000),
        )
    )
    if "large" in scales:
        seconds = scales["large"]["full"]["seconds"]
        rows.append(("1M-row load < 3 min", f"{seconds:,.0f} s", verdict(seconds < 180)))
    ratio = biggest["delta"]["ratio_to_full"]
    rows.append(
        ("1 % delta ≤ 5 % of full load", f"{ratio:.1%} ({names[-1]})", verdict(ratio <= 0.05))
    )
    peaks = {
        n: max(s["full"]["peak_rss_mb"], s["full"]["workers_peak_rss_mb"])
        for n, s in scales.items()
    }
    top = max(peaks.values())
    rows.append(("peak RSS < 1.5 GB", f"{top:,.0f} MB", verdict(top < 1536)))
    if len(names) >= 2:
        low, high = peaks[names[-2]], peaks[names[-1]]
        growth = high / low - 1
        rows.append(
            (
                f"RSS growth {names[-2]} → {names[-1]} < 20 %",
                f"{low:,.0f} → {high:,.0f} MB ({growth:+.0%})",
                verdict(growth < 0.2),
            )
        )
    flat = biggest["stages"]["flatten"]
    rows.append(
        (
            "flattening ≥ 200,000 resources/s",
            f"{flat['resources_per_s']:,}/s ({flat['resources']:,} resources)",
            verdict(flat["resources_per_s"] >= 200_000),
        )
    )
    gx = next((s["gx_million"] for s in scales.values() if "gx_million" in s), None)
    if gx:
        rows.append(
            (
                "GX on a 1M-row staging table < 5 s",
                f"{gx['inner_seconds']:.1f} s",
                verdict(gx["inner_seconds"] < 5),
            )
        )
    return rows


def markdown(report: dict[str, Any], machine: dict[str, Any], results_path: Path) -> str:
    out = [
        f"Run {dt.date.today():%Y-%m-%d}, results in `{results_path.as_posix()}`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), Python {machine['python']}, "
        f"load average at the end {machine['load_average']}.",
        "",
        "```",
        machine["memory"],
        "```",
        "",
        f"Importing GX, fhir.resources and DuckDB and building the GX context costs "
        f"{report['imports']['seconds']:.1f} s per fresh process (paid by each sync task; "
        "excluded from the isolated stage rows, included in full and delta runs).",
        "",
        "| target (issue 8) | measured | met |",
        "|---|---|---|",
        *[f"| {t} | {m} | {ok} |" for t, m, ok in target_rows(report)],
        "",
    ]
    if "speedup_vs_naive" in report:
        ratios = ", ".join(f"{k} ×{v}" for k, v in report["speedup_vs_naive"].items())
        out += [f"Speed-up over the naive baseline (small scale, rows/s): {ratios}.", ""]
    history = next((s["history"] for s in report["scales"].values() if "history" in s), None)
    if history:
        out += [history_line(history), ""]
    out.append(stage_table(report))
    return "\n".join(out) + "\n"


def history_line(history: dict[str, Any]) -> str:
    """The per-night costs that read a hospital's past batches, after a year of nightlies."""
    per = history["batches"] // max(history["hospitals"], 1)
    return (
        f"After a year of nightlies ({per} batches per hospital, copies of the first scale's), "
        f"per night for {history['hospitals']} hospitals: validation's known patients "
        f"{history['known_patients_every_batch_s']:.2f} s reading every batch, "
        f"{history['known_patients_cached_s']:.2f} s with the cache; linkage's name keys "
        f"{history['name_keys_every_batch_s']:.2f} / {history['name_keys_cached_s']:.2f} s; "
        f"the build's gov tables {history['gov_every_batch_s']:.2f} s in full, "
        f"{history['gov_incremental_s']:.2f} s incremental."
    )


def update_docs(docs: Path, body: str) -> None:
    """Replace the generated section between the bench markers; the rest is hand-written."""
    text = docs.read_text(encoding="utf-8") if docs.is_file() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(f"{head}{BEGIN}\n{body}{END}{tail}", encoding="utf-8")
