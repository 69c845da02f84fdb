"""The measured steps; each runs in its own child process (see child.py) and returns counts.

Steps read and write under $WALNUT_HOME like the real pipeline, so a stage measured alone
does exactly the work it does inside `walnut sync`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.settings import Settings, load_settings

HOSPITALS = ("east_liver", "north_chest", "south_general")
GX_ROWS = 1_000_000


def _batches_file(settings: Settings) -> Path:
    return settings.home / "_bench" / "batches.json"


def _batches(settings: Settings) -> dict[str, str]:
    return json.loads(_batches_file(settings).read_text(encoding="utf-8"))


def generate(settings: Settings, patients: int) -> dict[str, Any]:
    """Synthetic exports of the three hospitals (not timed as a pipeline stage)."""
    from synthetic.generate import generate_all

    summary = generate_all(settings.sources, patients=patients, seed=11)
    rows = sum(
        n
        for tables in summary["rows"].values()
        for name, n in tables.items()
        if name not in {"hl7_files", "hl7_messages", "adt_messages", "linked_patients"}
    )
    return {"source_rows": rows}


def land(settings: Settings) -> dict[str, Any]:
    from pipeline.sync import land_sources

    batches = {h: land_sources(h, settings) for h in HOSPITALS}
    _batches_file(settings).parent.mkdir(parents=True, exist_ok=True)
    _batches_file(settings).write_text(json.dumps(batches), encoding="utf-8")
    return {"batches": sum(b is not None for b in batches.values())}


def extract(settings: Settings) -> dict[str, Any]:
    """Readers only: every landed file of every batch to raw frames, in the sync's chunks."""
    from pipeline.batch_files import BatchFiles
    from transforms.extract import read_landed
    from transforms.extract.landing import read_manifest
    from transforms.mapping import load_site_mapping

    rows = 0
    for hospital, batch_id in _batches(settings).items():
        if batch_id is None:
            continue
        mapping = load_site_mapping(settings.mappings / hospital)
        specs = {s.key: s for s in mapping.sources}
        files = BatchFiles(settings, hospital, batch_id)
        for landed in read_manifest(files.landing):
            for key in landed.sources:
                path = files.landing / landed.name
                for raw in read_landed(specs[key], path, settings.chunk_rows):
                    rows += raw.rows_read
    return {"source_rows": rows}


def _each_batch(settings: Settings, stage: Callable[..., dict]) -> list[dict]:
    return [stage(h, b, settings) for h, b in _batches(settings).items() if b is not None]


def _read_rows(settings: Settings) -> int:
    from pipeline.batch_files import BatchFiles, read_json

    total = 0
    for hospital, batch_id in _batches(settings).items():
        if batch_id is None:
            continue
        stage = read_json(BatchFiles(settings, hospital, batch_id).gov / "stage.json")
        total += sum(t["read"] for t in stage["tables"].values())
    return total


def stage(settings: Settings) -> dict[str, Any]:
    from pipeline.sync import stage_batch

    _each_batch(settings, stage_batch)
    return {"source_rows": _read_rows(settings)}


def validate(settings: Settings) -> dict[str, Any]:
    from pipeline.sync import validate_batch

    _each_batch(settings, validate_batch)
    return {"source_rows": _read_rows(settings)}


def fhir(settings: Settings) -> dict[str, Any]:
    from pipeline.sync import map_batch_to_fhir

    runs = _each_batch(settings, map_batch_to_fhir)
    resources = sum(sum(r["resources"].values()) for r in runs)
    return {"source_rows": _read_rows(settings), "resources": resources}


def finish(settings: Settings) -> dict[str, Any]:
    """Deletions and reconciliation: the rest of the sync after mapping."""
    from pipeline.sync import apply_deletions, reconcile_batch

    _each_batch(settings, apply_deletions)
    runs = _each_batch(settings, reconcile_batch)
    return {"source_rows": _read_rows(settings), "resources": sum(r["resources"] for r in runs)}


def build(settings: Settings) -> dict[str, Any]:
    from warehouse.build import build_warehouse

    result = build_warehouse(settings)
    resources = sum(n for t, n in result["tables"].items() if t.startswith("fhir."))
    return {"resources": resources}


def flatten(settings: Settings) -> dict[str, Any]:
    """ViewDefinition flattening alone: core.* recomputed from fhir.* on a copy of the warehouse."""
    import duckdb

    from warehouse.build import _load_core

    copy = settings.home / "_bench" / "flatten.duckdb"
    shutil.copyfile(settings.warehouse_db, copy)
    con = duckdb.connect(str(copy))
    try:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'fhir'"
        ).fetchall()
        resources = sum(
            con.execute(f"SELECT count(*) FROM fhir.{t}").fetchone()[0] for (t,) in tables
        )
        started = time.perf_counter()
        _load_core(con)
        seconds = time.perf_counter() - started
    finally:
        con.close()
        copy.unlink(missing_ok=True)
    return {"resources": resources, "inner_seconds": seconds}


def sync_all(settings: Settings) -> dict[str, Any]:
    """`walnut sync --all`: every hospital from landing to reconciliation.

    Hospitals sync in parallel processes, as `walnut sync --all` and the per-hospital Airflow
    DAGs run them.
    """
    from pipeline.parallel import sync_hospitals

    runs = []
    for hospital, run in sync_hospitals(HOSPITALS, settings):
        if isinstance(run, Exception):
            raise RuntimeError(f"{hospital}: sync failed") from run
        runs.append(run)
    done = [r for r in runs if r.get("batch_id")]
    return {
        "source_rows": sum(r["read"] for r in done),
        "resources": sum(r["resources"] for r in done),
    }


def build_all(settings: Settings) -> dict[str, Any]:
    """`walnut build`: the warehouse from the synced batches, in its own process as after
    `walnut sync --all` and in the warehouse build DAG."""
    from warehouse.build import build_warehouse

    return {"tables": len(build_warehouse(settings)["tables"])}


def make_delta(settings: Settings) -> dict[str, Any]:
    """A second export with ~1 % of rows re-sent or changed (see benchmarks.delta)."""
    from benchmarks.delta import write_delta_exports

    return {"source_rows": write_delta_exports(settings.sources)}


def gx_million(settings: Settings) -> dict[str, Any]:
    """GX suite of the lab table on a 1M-row staging frame (staged lab rows repeated)."""
    import datetime as dt

    import pandas as pd
    import pyarrow.parquet as pq

    from expectations.runner import validate_frame
    from transforms.standardize import conform

    parts = sorted((settings.staging).glob("*/lab/*.parquet"))
    lab = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    repeats = -(-GX_ROWS // len(lab))
    frame = conform(pd.concat([lab] * repeats, ignore_index=True).iloc[:GX_ROWS], "lab")
    frame["_row_hash"] = frame["_row_hash"] + "-" + pd.Series(range(len(frame))).astype(str)
    today = dt.date.today()
    validate_frame("lab", frame.iloc[:1000], run_date=today)  # GX import and suite build
    started = time.perf_counter()
    outcome = validate_frame("lab", frame, run_date=today)
    seconds = time.perf_counter() - started
    return {"source_rows": len(frame), "inner_seconds": seconds, "failed": len(outcome.failed_rows)}


def warm_up(settings: Settings | None) -> dict[str, Any]:
    """Import the heavy libraries and build the GX context (the first call also caches bytecode)."""

    import duckdb  # noqa: F401
    import fhir.resources.R4B  # noqa: F401

    import pipeline.sync  # noqa: F401
    import transforms.fhir.mapper  # noqa: F401
    import warehouse.build  # noqa: F401
    from expectations.runner import _get_context
    from warehouse.build import load_views
    from warehouse.viewdef import compile_view

    _get_context()
    for view in load_views():  # imports the FHIR element types the compiler reads
        compile_view(view, f"fhir.{view['resource'].lower()}")
    return {}


def history(settings: Settings, batches: int = 365) -> dict[str, Any]:
    """Per-night costs after a year of nightlies, on copies of this home's finished batches."""
    from benchmarks.history import measure, replicate

    home = settings.home / "_bench" / "history"
    shutil.rmtree(home, ignore_errors=True)
    replicate(settings, home, batches)
    try:
        return measure(load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"}))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def naive(settings: Settings) -> dict[str, Any]:
    from benchmarks.naive import run_naive

    return run_naive(settings)


STEPS: dict[str, Callable[..., dict[str, Any]]] = {
    "generate": generate,
    "warm_up": warm_up,
    "land": land,
    "extract": extract,
    "stage": stage,
    "validate": validate,
    "fhir": fhir,
    "finish": finish,
    "build": build,
    "flatten": flatten,
    "sync_all": sync_all,
    "build_all": build_all,
    "make_delta": make_delta,
    "gx_million": gx_million,
    "naive": naive,
    "history": history,
}


def run_step(name: str, **kwargs: Any) -> dict[str, Any]:
    return STEPS[name](load_settings(), **kwargs)
