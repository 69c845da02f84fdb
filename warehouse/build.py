"""Warehouse build: FHIR layer -> new DuckDB file (fhir.*, core.*, gov.*) swapped in atomically.

Readers never see half a build: the new database is written beside the old one and renamed
over it. One build at a time: a second one is refused while the lock is held.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError

log = logging.getLogger(__name__)

VIEWS_DIR = Path(__file__).parent / "views"
QUARANTINE_STAGES = ("extract", "validate", "fhir")


class BuildLocked(WalnutError):
    """Another build holds the warehouse lock."""


@contextmanager
def build_lock(warehouse: Path) -> Iterator[None]:
    warehouse.mkdir(parents=True, exist_ok=True)
    with (warehouse / ".build.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BuildLocked(
                "another warehouse build is running (lock held on warehouse/.build.lock); "
                "wait for it to finish and run the build again"
            ) from exc
        yield


def finished_batches(settings: Settings) -> list[tuple[str, str, Path]]:
    """(hospital, batch id, gov folder) of every batch whose sync reconciled, oldest first."""
    batches = []
    for run in sorted(settings.gov.glob("*/*/load_run.json")):
        if json.loads(run.read_text(encoding="utf-8")).get("status") == "success":
            batches.append((run.parent.parent.name, run.parent.name, run.parent))
    return sorted(batches, key=lambda b: b[1])


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _load_fhir(con: duckdb.DuckDBPyConnection, settings: Settings, batches: list) -> dict[str, int]:
    """One fhir.<type> table of raw resources; newest batch wins per resource id."""
    files: dict[str, list[Path]] = {}
    for hospital, batch_id, _ in batches:
        for path in sorted((settings.fhir / hospital / batch_id).glob("*.ndjson")):
            files.setdefault(path.stem, []).append(path)
    con.execute("CREATE SCHEMA fhir")
    counts = {}
    for rtype, paths in sorted(files.items()):
        table = f"fhir.{rtype.lower()}"
        con.execute(
            f"""CREATE TABLE {table} AS
            SELECT json AS resource,
                   regexp_extract(filename, '([^/]+)/[^/]+\\.ndjson$', 1) AS batch_id
            FROM read_ndjson_objects({_sql_list(paths)}, filename = true)
            QUALIFY row_number() OVER (PARTITION BY json ->> 'id' ORDER BY batch_id DESC) = 1"""
        )
        counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def _load_core(con: duckdb.DuckDBPyConnection, fhir_tables: dict[str, int]) -> dict[str, int]:
    """core.* tables flattened by the SQL-on-FHIR ViewDefinitions in warehouse/views/."""
    from warehouse.viewdef import compile_view

    con.execute("CREATE SCHEMA core")
    counts = {}
    for path in sorted(VIEWS_DIR.glob("*.json")):
        view = json.loads(path.read_text(encoding="utf-8"))
        source = f"fhir.{view['resource'].lower()}"
        target = f"core.{view['name']}"
        if source not in fhir_tables:  # resource type not delivered yet: flatten an empty table
            con.execute(f"CREATE TABLE IF NOT EXISTS {source} (resource JSON, batch_id VARCHAR)")
        sql = compile_view(view, source)
        con.execute(
            f"""CREATE TABLE {target} AS
            SELECT v.*, split_part(v.lineage, ':', 3) AS hospital,
                   split_part(v.lineage, ':', 4) AS batch_id
            FROM ({sql}) v"""
        )
        counts[target] = con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    return counts


def _load_gov(con: duckdb.DuckDBPyConnection, batches: list) -> dict[str, int]:
    """gov.* tables: load runs, quarantine, DQ results and reconciliation of finished batches."""
    con.execute("CREATE SCHEMA gov")
    folders = [folder for _, _, folder in batches]
    parquet = {
        "gov.quarantine": [
            f / f"quarantine_{s}.parquet" for f in folders for s in QUARANTINE_STAGES
        ],
        "gov.dq_result": [f / "dq_result.parquet" for f in folders],
        "gov.reconciliation": [f / "reconciliation.parquet" for f in folders],
    }
    counts = {}
    runs = [json.loads((f / "load_run.json").read_text(encoding="utf-8")) for f in folders]
    con.execute(
        """CREATE TABLE gov.load_run (hospital VARCHAR, batch_id VARCHAR, status VARCHAR,
        finished_at TIMESTAMPTZ, mapping_version VARCHAR, "read" BIGINT, loaded BIGINT,
        quarantined BIGINT, dropped BIGINT, resources BIGINT)"""
    )
    if runs:
        con.executemany(
            "INSERT INTO gov.load_run VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    r[k]
                    for k in (
                        "hospital",
                        "batch_id",
                        "status",
                        "finished_at",
                        "mapping_version",
                        "read",
                        "loaded",
                        "quarantined",
                        "dropped",
                        "resources",
                    )
                ]
                for r in runs
            ],
        )
    counts["gov.load_run"] = len(runs)
    for table, paths in parquet.items():
        existing = [p for p in paths if p.is_file()]
        if existing:
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet({_sql_list(existing)}, "
                "union_by_name = true)"
            )
        else:
            con.execute(f"CREATE TABLE {table} (hospital VARCHAR, batch_id VARCHAR)")
        counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def build_warehouse(settings: Settings | None = None) -> dict:
    """Rebuild warehouse/walnut.duckdb from every finished batch; returns table row counts."""
    settings = settings or load_settings()
    started = time.monotonic()
    with build_lock(settings.warehouse):
        batches = finished_batches(settings)
        tmp = settings.warehouse / f".walnut.duckdb.{os.getpid()}.building"
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        try:
            counts = _load_fhir(con, settings, batches)
            counts |= _load_core(con, counts)
            counts |= _load_gov(con, batches)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, settings.warehouse_db)
    seconds = round(time.monotonic() - started, 2)
    log.info("warehouse built from %d batch(es) in %.2f s", len(batches), seconds)
    return {
        "path": str(settings.warehouse_db),
        "batches": len(batches),
        "seconds": seconds,
        "tables": counts,
    }
