"""Warehouse build: merge new FHIR batches into a copy of the DuckDB file, then swap it in.

Incremental by default: `gov.applied_batch` records which (hospital, batch) pairs are in the
warehouse, and a build merges only the others into `fhir.<type>` (one row per resource id).
Newest wins by batch order: batch ids start with their landing time (UTC), so they sort in the
order the hospital exported them; that is our proxy for the source timestamp. A resource's own
`meta.lastUpdated`, once the mappers fill it from the HIS, would replace `batch_id` as the
ordering key in `_merge_resources` and `_apply_tombstones`. Deletions arrive as tombstones
(`fhir/<hospital>/<batch>/_tombstones.ndjson`) and remove a resource whose batch is older than
the tombstone's; the newest tombstone per resource is kept in `gov.tombstone`, so a late older
batch cannot resurrect a deleted resource.

`core.*` follows the delta: the merge records every resource id it inserted, replaced or
tombstoned (`_changed`), and only those resources are flattened again; their old core rows are
found by the view's `getResourceKey()` column. A full build, a changed views fingerprint (the
ViewDefinitions, the compiler's code and the DuckDB version) or a view without a resource key
column recompute core.* in full, so an incremental build always equals a full rebuild. The
cohort marts are recomputed in full from core.* (per-patient SQL, cheap); the `gov.*` run
tables take the new batches' gov files only, and the quarantine state is recomputed from them
and the entries already loaded. core.patient_link is recomputed only when its
inputs changed (warehouse/linkage.py), and the Parquet snapshot reuses unchanged partitions of
the previous one (warehouse/export.py). Replaced versions stay in fhir.* and core.* as rows
marked deleted, with DuckDB's vacuum off, until a fifth of a table's rows are: the build then
rewrites that table (`_compact_without_vacuum`).

Readers never see half a build: the new database is written beside the old one (a copy of it,
or an empty file for `full=True`) and renamed over it; a read-only connection opened before the
rename keeps reading the old file until it reconnects. One build at a time: a second one is
refused while the lock is held.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.settings import Settings, load_settings, memory_bytes
from transforms.errors import WalnutError

log = logging.getLogger(__name__)

VIEWS_DIR = Path(__file__).parent / "views"
VIEWDEF_DIR = Path(__file__).parent / "viewdef"
QUARANTINE_STAGES = ("extract", "validate", "fhir")
TOMBSTONES = "_tombstones.ndjson"
LINK_TABLE = "core.patient_link"  # written by warehouse/linkage.py after the other tables
# Share of WALNUT_DUCKDB_MEMORY the Parquet snapshot may cache. It streams tables out, and a
# cache as large as the merge's bought it ~0.5 s of 2.3 s at ~1M rows but put it at the top of
# the build's peak RSS (+100 MB), as DuckDB fills whatever cache it may.
SNAPSHOT_MEMORY_SHARE = 0.6
# Share of a table's rows that are deleted (replaced versions) from which an incremental build
# rewrites the table. DuckDB's own vacuum is off in incremental builds: at every checkpoint it
# rewrote a table's last row group to fold the delta's new rows into it (0.85 s of a 1 % delta
# at ~1M rows, for fhir.encounter alone) and yet left uniformly spread deleted rows in place
# (DuckDB 2.0: still there at 40 %). Deleted rows are skipped by scans but read from disk.
COMPACT_DELETED_SHARE = 0.2
# Columns of a fhir.<type> table. The JSON text in zstd rather than DuckDB's own string
# compression (dictionary + FSST): at ~1M observations it wrote in 1.1 instead of 3.1 s, took
# 89 instead of 283 MB, and scanned as fast. The whole file is copied on every build, so its
# size is part of every nightly's cost.
RESOURCE_COLUMNS = "id VARCHAR, resource JSON USING COMPRESSION zstd, batch_id VARCHAR"
SCHEMAS = ("fhir", "core", "cohort", "gov")
# Recomputed from the batches' gov files on every build (applied_batch, tombstone and
# build_run are the warehouse's own state and persist across incremental builds).
RUN_TABLES = (
    "gov.load_run",
    "gov.quarantine",
    "gov.quarantine_release",
    "gov.dq_result",
    "gov.reconciliation",
)
_BATCH_FROM_PATH = "regexp_extract(filename, '([^/]+)/[^/]+\\.ndjson$', 1)"
_HOSPITAL_FROM_PATH = "regexp_extract(filename, '([^/]+)/[^/]+/[^/]+\\.ndjson$', 1)"


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


def views_fingerprint() -> str:
    """Hash of what core.* rows depend on besides fhir.*: the ViewDefinitions, the compiler's
    code and the DuckDB version. A change forces core.* to be recomputed in full, so rows
    flattened incrementally never mix with rows of another compiler or view version."""
    digest = hashlib.sha256(duckdb.__version__.encode())
    for path in [*sorted(VIEWS_DIR.glob("*.json")), *sorted(VIEWDEF_DIR.glob("*.py"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _finished_at(folder: Path) -> str:
    return str(json.loads((folder / "load_run.json").read_text(encoding="utf-8"))["finished_at"])


def _sql_list(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def _create_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    for schema in ("fhir", "gov"):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(
        """CREATE TABLE IF NOT EXISTS gov.applied_batch (hospital VARCHAR, batch_id VARCHAR,
        run_finished_at VARCHAR, applied_at TIMESTAMPTZ)"""
    )
    con.execute(
        """CREATE TABLE IF NOT EXISTS gov.tombstone (hospital VARCHAR, resource_type VARCHAR,
        id VARCHAR, batch_id VARCHAR, deleted_at VARCHAR)"""
    )
    con.execute(
        """CREATE TABLE IF NOT EXISTS gov.build_run (built_at TIMESTAMPTZ, mode VARCHAR,
        batches_applied INTEGER, views_sha256 VARCHAR)"""
    )


def pending_batches(applied: dict[tuple[str, str], str], batches: list) -> list:
    """Finished batches not applied yet, or re-run (replayed) since they were applied."""
    return [b for b in batches if applied.get((b[0], b[1])) != _finished_at(b[2])]


def _merge_tombstones(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> None:
    """Keep the newest tombstone per (resource type, id) in gov.tombstone."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _incoming_tombstone AS
        SELECT {_HOSPITAL_FROM_PATH} AS hospital, "resourceType" AS resource_type, id,
               {_BATCH_FROM_PATH} AS batch_id, deleted_at
        FROM read_json({_sql_list(paths)}, format = 'newline_delimited', filename = true,
             columns = {{'resourceType': 'VARCHAR', 'id': 'VARCHAR', 'deleted_at': 'VARCHAR'}})
        QUALIFY row_number() OVER (PARTITION BY resource_type, id
                                   ORDER BY batch_id DESC, deleted_at DESC) = 1"""
    )
    con.execute(
        "INSERT INTO _changed SELECT 'fhir.' || lower(resource_type), id FROM _incoming_tombstone"
    )
    con.execute(
        """MERGE INTO gov.tombstone AS t USING _incoming_tombstone AS s
        ON t.resource_type = s.resource_type AND t.id = s.id
        WHEN MATCHED AND s.batch_id > t.batch_id THEN UPDATE SET
            hospital = s.hospital, batch_id = s.batch_id, deleted_at = s.deleted_at
        WHEN NOT MATCHED THEN INSERT (hospital, resource_type, id, batch_id, deleted_at)
            VALUES (s.hospital, s.resource_type, s.id, s.batch_id, s.deleted_at)"""
    )


def _merge_resources(con: duckdb.DuckDBPyConnection, table: str, paths: list[Path]) -> None:
    """Upsert the newest version per resource id; an older batch never overwrites a newer."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({RESOURCE_COLUMNS})")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _read AS
        SELECT json ->> 'id' AS id, json AS resource, {_BATCH_FROM_PATH} AS batch_id
        FROM read_ndjson_objects({_sql_list(paths)}, filename = true)"""
    )
    # One version per id: the newest batch's, ties broken by the JSON text. Only ids read more
    # than once go through the window; sorting every resource by its text took 7 of the 9 s
    # of merging ~1M observations.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _incoming AS
        WITH repeated AS (SELECT id FROM _read GROUP BY id HAVING count(*) > 1)
        SELECT r.* FROM _read AS r ANTI JOIN repeated AS d ON r.id IS NOT DISTINCT FROM d.id
        UNION ALL
        (SELECT r.* FROM _read AS r SEMI JOIN repeated AS d ON r.id IS NOT DISTINCT FROM d.id
         QUALIFY row_number() OVER (
             PARTITION BY r.id ORDER BY r.batch_id DESC, CAST(r.resource AS VARCHAR) DESC
         ) = 1)"""
    )
    con.execute("DROP TABLE _read")
    con.execute(f"INSERT INTO _changed SELECT '{table}', id FROM _incoming")
    # An upsert as delete + insert, not MERGE's UPDATE: DuckDB's checkpoint rewrites every row
    # group an UPDATE touched (a 1 % delta touches them all: 5 s and +50 % file size on ~1M
    # observations), while deleted rows are only marked and new ones appended.
    # Equal batch ids replace too: a replayed batch replaces its own earlier output.
    con.execute(
        f"""DELETE FROM {table} AS t USING _incoming AS s
        WHERE t.id = s.id AND s.batch_id >= t.batch_id"""
    )
    con.execute(
        f"""INSERT INTO {table} (id, resource, batch_id)
        SELECT s.id, s.resource, s.batch_id FROM _incoming AS s
        WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = s.id)"""
    )
    con.execute("DROP TABLE _incoming")


def _fhir_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"fhir.{name}"
        for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'fhir' "
            "AND database_name = current_database() ORDER BY table_name"
        ).fetchall()
    ]


def _create_changed(con: duckdb.DuckDBPyConnection) -> None:
    """TEMP `_changed` (fhir table, id): every resource this build's merge may have inserted,
    replaced or deleted; core.* is flattened again for exactly these."""
    con.execute("CREATE OR REPLACE TEMP TABLE _changed (tbl VARCHAR, id VARCHAR)")


def _apply_tombstones(con: duckdb.DuckDBPyConnection) -> int:
    """Delete every resource older than its newest tombstone.

    Earlier builds left no resource older than its tombstone, so only resources or tombstones
    merged now (`_changed`) can break that; checking just those keeps the cost with the delta.
    """
    deleted = 0
    for table in _fhir_tables(con):
        rtype = table.split(".", 1)[1]
        deleted += con.execute(
            f"""DELETE FROM {table} r USING gov.tombstone t
            WHERE lower(t.resource_type) = '{rtype}' AND t.id = r.id
              AND t.batch_id > r.batch_id
              AND r.id IN (SELECT id FROM _changed WHERE tbl = '{table}')"""
        ).fetchone()[0]
    return deleted


def merge_batches(con: duckdb.DuckDBPyConnection, settings: Settings, batches: list) -> None:
    """Merge the batches' resources and tombstones into fhir.* and record them as applied."""
    _create_state_tables(con)
    _create_changed(con)
    resources: dict[str, list[Path]] = {}
    tombstones: list[Path] = []
    for hospital, batch_id, _ in batches:
        for path in sorted((settings.fhir / hospital / batch_id).glob("*.ndjson")):
            if path.name == TOMBSTONES:
                tombstones.append(path)
            elif not path.name.startswith("_"):
                resources.setdefault(path.stem, []).append(path)
    if tombstones:
        _merge_tombstones(con, tombstones)
    for rtype, paths in sorted(resources.items()):
        _merge_resources(con, f"fhir.{rtype.lower()}", paths)
    deleted = _apply_tombstones(con)
    now = dt.datetime.now(dt.UTC)
    if not batches:
        return
    con.executemany(
        "DELETE FROM gov.applied_batch WHERE hospital = ? AND batch_id = ?",
        [[h, b] for h, b, _ in batches],
    )
    con.executemany(
        "INSERT INTO gov.applied_batch VALUES (?, ?, ?, ?)",
        [[h, b, _finished_at(f), now] for h, b, f in batches],
    )
    log.info(
        "merged %d batch(es): %d resource file(s), %d tombstone file(s), %d resource(s) deleted",
        len(batches),
        sum(len(p) for p in resources.values()),
        len(tombstones),
        deleted,
    )


def load_views() -> list[dict]:
    """The core ViewDefinitions (warehouse/views/*.json), in file name order."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(VIEWS_DIR.glob("*.json"))]


def _view_source(view: dict) -> str:
    return f"fhir.{view['resource'].lower()}"


def compile_views() -> dict[str, str]:
    """{view name: its DuckDB SQL over fhir.<type>} of every core ViewDefinition."""
    from warehouse.viewdef import compile_view

    return {view["name"]: compile_view(view, _view_source(view)) for view in load_views()}


def view_queries(con: duckdb.DuckDBPyConnection, fingerprint: str) -> dict[str, str]:
    """The compiled views, kept in build.view_sql under the views fingerprint they belong to.

    An incremental build reads them back instead of importing the compiler and the FHIR
    models it reads element types from: ~0.3 s of a 1 % delta's build at ~1M rows. The
    fingerprint covers the views, the compiler's code and the DuckDB version, so SQL of
    another compiler is never reused. The schema is neither curated nor exported.
    """
    con.execute("CREATE SCHEMA IF NOT EXISTS build")
    con.execute(
        "CREATE TABLE IF NOT EXISTS build.view_sql "
        "(views_sha256 VARCHAR, name VARCHAR, sql VARCHAR)"
    )
    kept = dict(
        con.execute(
            "SELECT name, sql FROM build.view_sql WHERE views_sha256 = ?", [fingerprint]
        ).fetchall()
    )
    if kept and set(kept) == {view["name"] for view in load_views()}:
        return kept
    queries = compile_views()
    con.execute("DELETE FROM build.view_sql")
    con.executemany(
        "INSERT INTO build.view_sql VALUES (?, ?, ?)",
        [(fingerprint, name, sql) for name, sql in queries.items()],
    )
    return queries


def _load_core(con: duckdb.DuckDBPyConnection, queries: dict[str, str] | None = None) -> None:
    """core.* tables flattened by the SQL-on-FHIR ViewDefinitions in warehouse/views/, from
    `queries` (their compiled SQL) or compiled here."""
    queries = queries or compile_views()
    con.execute("DROP SCHEMA IF EXISTS core CASCADE")
    con.execute("CREATE SCHEMA core")
    for view in load_views():
        source = _view_source(view)
        # Resource type not delivered yet: flatten an empty table.
        con.execute(f"CREATE TABLE IF NOT EXISTS {source} ({RESOURCE_COLUMNS})")
        sql = queries[view["name"]]
        con.execute(
            f"""CREATE TABLE core.{view["name"]} AS
            SELECT v.*, split_part(v.lineage, ':', 3) AS hospital,
                   split_part(v.lineage, ':', 4) AS batch_id
            FROM ({sql}) v"""
        )


def resource_key_column(view: dict) -> str | None:
    """The view's column holding `getResourceKey()` outside any forEach: every core row of the
    view carries the id of the resource it was flattened from there."""
    for select in view["select"]:
        if any(key in select for key in ("forEach", "forEachOrNull", "repeat")):
            continue
        for column in select.get("column", []):
            if column["path"].replace(" ", "") == "getResourceKey()":
                return str(column["name"])
    return None


def _table_columns(con: duckdb.DuckDBPyConnection, database: str, schema: str) -> dict:
    """{table: [(column, type), ...]} of one schema of one attached database."""
    rows = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? ORDER BY table_name, column_index",
        [database, schema],
    ).fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in rows:
        tables.setdefault(table, []).append((column, data_type))
    return tables


def _flatten_changed(
    con: duckdb.DuckDBPyConnection, main: str, changed: set[str], queries: dict[str, str]
) -> None:
    """Flatten the resources in `_changed` into core.* of the attached `_core_delta` database.

    The same `_load_core` as a full build runs there, over copies of just those resources, so
    the delta's rows are exactly the rows a full recompute would give them.
    """
    existing = set(_fhir_tables(con))
    con.execute("USE _core_delta")
    try:
        con.execute("CREATE SCHEMA fhir")
        for table in sorted(changed & existing):
            con.execute(
                f"""CREATE TABLE {table} AS SELECT * FROM "{main}".{table}
                WHERE id IN (SELECT id FROM _changed WHERE tbl = '{table}')"""
            )
        _load_core(con, queries)
    finally:
        con.execute(f'USE "{main}"')


def _update_core(con: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> bool:
    """Replace the core rows of the resources in `_changed` by their fresh flattening.

    Returns False (and changes nothing) when that cannot equal a full recompute: a view without
    a resource key column, a core table missing or shaped unlike the view's output.
    """
    views = load_views()
    main = con.execute("SELECT current_database()").fetchone()[0]
    current = _table_columns(con, main, "core")
    if any(resource_key_column(v) is None or v["name"] not in current for v in views):
        return False
    changed = {t for (t,) in con.execute("SELECT DISTINCT tbl FROM _changed").fetchall()}
    con.execute("ATTACH ':memory:' AS _core_delta")
    try:
        _flatten_changed(con, main, changed, queries)
        delta = _table_columns(con, "_core_delta", "core")
        if any(delta.get(v["name"]) != current[v["name"]] for v in views):
            return False
        for view in views:
            source, key = _view_source(view), resource_key_column(view)
            if source not in changed:
                continue
            con.execute(
                f"""DELETE FROM core.{view["name"]}
                WHERE "{key}" IN (SELECT id FROM _changed WHERE tbl = '{source}')"""
            )
            con.execute(
                f"INSERT INTO core.{view['name']} SELECT * FROM _core_delta.core.{view['name']}"
            )
    finally:
        con.execute("DETACH _core_delta")
    return True


# Columns quarantine_state_sql adds to the entries read from the batches' quarantine files.
_STATE_COLUMNS = ("origin_batch_id", "released_by", "released_at", "open")


def _update_gov(con: duckdb.DuckDBPyConnection, pending: list) -> bool:
    """Replace the gov run rows of the `pending` batches only and recompute the quarantine
    state; False (nothing changed) if a run table is missing or a new file does not fit it.

    Reading every batch's files again cost 3.4–4.4 s per build after a year of nightlies
    (1,095 batches, ~6,500 files), whatever the night's delta.
    """
    from pipeline.quarantine_state import quarantine_state_sql

    tables = con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'gov'"
    ).fetchall()
    if not set(RUN_TABLES) <= {table for (table,) in tables}:
        return False
    folders = [folder for _, _, folder in pending]
    mine = "(hospital, {}) IN (SELECT (hospital, batch_id) FROM _pending)"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("CREATE TEMP TABLE _pending (hospital VARCHAR, batch_id VARCHAR)")
        con.executemany("INSERT INTO _pending VALUES (?, ?)", [p[:2] for p in pending])
        con.execute(
            f"CREATE TEMP TABLE _entries AS SELECT * EXCLUDE ({', '.join(_STATE_COLUMNS)}) "
            f"FROM gov.quarantine WHERE NOT {mine.format('batch_id')}"
        )
        for table in ("gov.load_run", "gov.dq_result", "gov.reconciliation"):
            con.execute(f"DELETE FROM {table} WHERE {mine.format('batch_id')}")
        con.execute(f"DELETE FROM gov.quarantine_release WHERE {mine.format('replay_batch_id')}")
        _insert_load_runs(con, folders)
        for table, paths in _gov_files(folders).items():
            found = [path for path in paths if path.is_file()]
            if found:
                target = "_entries" if table == "gov.quarantine" else table
                con.execute(
                    f"INSERT INTO {target} BY NAME SELECT * FROM "
                    f"read_parquet({_sql_list(found)}, union_by_name = true)"
                )
        con.execute("DROP TABLE gov.quarantine")
        con.execute(
            "CREATE TABLE gov.quarantine AS "
            + quarantine_state_sql("_entries", "gov.quarantine_release")
        )
        con.execute("COMMIT")
    except duckdb.Error as exc:  # e.g. a file with a column the table lacks: reload in full
        con.execute("ROLLBACK")
        log.info("gov tables reloaded in full: %s", str(exc).splitlines()[0])
        return False
    finally:
        con.execute("DROP TABLE IF EXISTS _pending")
        con.execute("DROP TABLE IF EXISTS _entries")
    return True


_LOAD_RUN_COLUMNS = (
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
    "kind",
    "replay_of",
)


def _insert_load_runs(con: duckdb.DuckDBPyConnection, folders: list[Path]) -> None:
    """gov.load_run rows from the batches' load_run.json (replay runs have a kind)."""
    runs = [json.loads((f / "load_run.json").read_text(encoding="utf-8")) for f in folders]
    rows = [[r.get(k, "sync" if k == "kind" else None) for k in _LOAD_RUN_COLUMNS] for r in runs]
    if rows:
        marks = ", ".join("?" * len(_LOAD_RUN_COLUMNS))
        con.executemany(f"INSERT INTO gov.load_run VALUES ({marks})", rows)


def _gov_files(folders: list[Path]) -> dict[str, list[Path]]:
    """Each gov run table's per-batch files (present or not), in the batches' order."""
    from pipeline.quarantine_state import RELEASE_FILE

    return {
        "gov.quarantine": [
            f / f"quarantine_{s}.parquet" for f in folders for s in QUARANTINE_STAGES
        ],
        "gov.dq_result": [f / "dq_result.parquet" for f in folders],
        "gov.reconciliation": [f / "reconciliation.parquet" for f in folders],
        "gov.quarantine_release": [f / RELEASE_FILE for f in folders],
    }


def _load_gov(con: duckdb.DuckDBPyConnection, batches: list) -> None:
    """gov run tables: load runs, quarantine, DQ results and reconciliation of finished batches."""
    for table in RUN_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")
    folders = [folder for _, _, folder in batches]
    con.execute(
        """CREATE TABLE gov.load_run (hospital VARCHAR, batch_id VARCHAR, status VARCHAR,
        finished_at TIMESTAMPTZ, mapping_version VARCHAR, "read" BIGINT, loaded BIGINT,
        quarantined BIGINT, dropped BIGINT, resources BIGINT, kind VARCHAR, replay_of VARCHAR)"""
    )
    _insert_load_runs(con, folders)
    files = _gov_files(folders)
    releases = [p for p in files.pop("gov.quarantine_release") if p.is_file()]
    for table, paths in files.items():
        existing = [p for p in paths if p.is_file()]
        if existing:
            con.execute(
                f"CREATE TABLE {table} AS SELECT * FROM read_parquet({_sql_list(existing)}, "
                "union_by_name = true)"
            )
        else:
            con.execute(f"CREATE TABLE {table} (hospital VARCHAR, batch_id VARCHAR)")
    _load_quarantine_state(con, releases)


def _load_quarantine_state(con: duckdb.DuckDBPyConnection, releases: list[Path]) -> None:
    """gov.quarantine_release (replay audit trail, from the `releases` files) and, on
    gov.quarantine, whether each entry is still `open` or was `released_by` a replay batch
    (pipeline/replay.py owns the rule)."""
    from pipeline.quarantine_state import (
        QUARANTINE_COLUMNS,
        RELEASE_COLUMNS,
        quarantine_state_sql,
    )

    if releases:
        con.execute(
            "CREATE TABLE gov.quarantine_release AS SELECT * FROM "
            f"read_parquet({_sql_list(releases)}, union_by_name = true)"
        )
    else:
        _create_empty(con, "gov.quarantine_release", RELEASE_COLUMNS)
    columns = con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'gov' AND table_name = 'quarantine'"
    ).fetchall()
    if ("source_row",) not in columns:  # no quarantine files yet: an empty, typed table
        con.execute("DROP TABLE gov.quarantine")
        _create_empty(con, "gov.quarantine", QUARANTINE_COLUMNS)
    con.execute(
        "CREATE TABLE gov.quarantine_state AS "
        + quarantine_state_sql("gov.quarantine", "gov.quarantine_release")
    )
    con.execute("DROP TABLE gov.quarantine")
    con.execute("ALTER TABLE gov.quarantine_state RENAME TO quarantine")


def _create_empty(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    """An empty table with the columns of a frame of these pandas dtypes (string or int64)."""
    types = {"string": "VARCHAR", "int64": "BIGINT"}
    body = ", ".join(f'"{name}" {types[dtype]}' for name, dtype in columns.items())
    con.execute(f"CREATE TABLE {table} ({body})")


def _recompute_curated(
    con: duckdb.DuckDBPyConnection,
    batches: list,
    build: dict[str, str],
    pending: list | None,
) -> None:
    """core.* (only the merged resources when `build` allows), cohort.* in full from core.*,
    then the gov run tables: the `pending` batches' rows only (None: in full)."""
    con.execute("DROP SCHEMA IF EXISTS cohort CASCADE")
    queries = view_queries(con, build["views"])
    if not (build["core"] == "delta" and _update_core(con, queries)):
        _load_core(con, queries)
    con.execute("DROP TABLE IF EXISTS _changed")  # read by the core update only: not kept
    from warehouse.cohorts import build_cohorts  # lazily: cohort SQL is read only by builds

    build_cohorts(con)
    if pending is None or not _update_gov(con, pending):
        _load_gov(con, batches)


def count_rows(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row count of every warehouse table, fhir -> core -> cohort -> gov, then by name."""
    names = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary"
    ).fetchall()
    order = {s: i for i, s in enumerate(SCHEMAS)}
    tables = sorted(
        (f"{s}.{t}" for s, t in names if s in order),
        key=lambda n: (order[n.split(".")[0]], n),
    )
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def read_applied(db: Path) -> tuple[dict[tuple[str, str], str], str | None] | None:
    """Applied batches and views fingerprint of the live warehouse; None if absent or legacy."""
    if not db.is_file():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        applied = con.execute(
            "SELECT hospital, batch_id, run_finished_at FROM gov.applied_batch"
        ).fetchall()
        row = con.execute(
            "SELECT views_sha256 FROM gov.build_run ORDER BY built_at DESC LIMIT 1"
        ).fetchone()
    except duckdb.CatalogException:  # built before incremental builds existed: start over
        return None
    finally:
        con.close()
    return {(h, b): f for h, b, f in applied}, row[0] if row else None


def _live_counts(settings: Settings) -> dict[str, int]:
    """Row counts of the live warehouse; re-exports its Parquet if that folder went missing."""
    from warehouse.export import export_parquet, parquet_published

    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        if not parquet_published(settings.warehouse):
            export_parquet(con, settings.warehouse)
        return count_rows(con)
    finally:
        con.close()


def _write_build(
    settings: Settings, tmp: Path, pending: list, batches: list, build: dict[str, str]
) -> tuple[dict[str, int], Path]:
    """Apply pending batches to tmp (a copy of the live file, or new) and export its tables.

    Returns row counts and the Parquet snapshot folder, published after the database swap.
    """
    from warehouse.export import curated_tables, write_snapshot
    from warehouse.pair_scorer import pair_scorer

    # Forked before the first query, so Splink's memory never adds to DuckDB's (pair_scorer).
    with pair_scorer() as score:
        con = duckdb.connect(str(tmp))
        try:
            # No progress bars: they would fill the Airflow task log with carriage returns.
            con.execute("SET enable_progress_bar = false")
            # Bounded: beyond it DuckDB spills to a temp folder beside the file being built.
            con.execute(f"SET memory_limit = '{settings.duckdb_memory}'")
            # Rows in any order unless a query says ORDER BY: keeping the order of their inputs made
            # the merge and the flattening hold rows back, so they filled the limit (full build at
            # ~1M rows: peak 493 MB at 320MB, 438 MB at 256MB without it, and 2-4 s faster). Every
            # table's meaning is order-free: the newest version wins by batch id, not by position.
            con.execute("SET preserve_insertion_order = false")
            if build["mode"] == "incremental":
                _compact_without_vacuum(con)
            merge_batches(con, settings, pending)
            _recompute_curated(
                con, batches, build, pending=pending if build["mode"] == "incremental" else None
            )
            con.execute(
                "INSERT INTO gov.build_run VALUES (?, ?, ?, ?)",
                [dt.datetime.now(dt.UTC), build["mode"], len(pending), build["views"]],
            )
            # Every table but the links is exported before linkage: the snapshot's DuckDB cache
            # and pandas with the linkage records never add up.
            curated = {f"{schema}.{table}" for schema, table, _ in curated_tables(con)}
            snapshot_memory = int(memory_bytes(settings.duckdb_memory) * SNAPSHOT_MEMORY_SHARE)
            con.execute(f"SET memory_limit = '{snapshot_memory}B'")
            snapshot = write_snapshot(con, settings.warehouse, tables=curated - {LINK_TABLE})
            from warehouse.linkage import build_patient_links  # lazily: pandas loads here

            _release_cache(con, settings.duckdb_memory)
            build_patient_links(con, settings, score)  # core.patient_link, counted below
            write_snapshot(con, settings.warehouse, tables={LINK_TABLE}, into=snapshot)
            counts = count_rows(con)
            con.execute("CHECKPOINT")
            return counts, snapshot
        finally:
            con.close()


def deleted_shares(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """{schema.table: share of its stored rows that are deleted} of the fhir and core tables.

    DuckDB counts rows marked deleted in `estimated_size` until they are reclaimed.
    """
    tables = con.execute(
        "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT temporary "
        "AND schema_name IN ('fhir', 'core') AND estimated_size > 0 ORDER BY ALL"
    ).fetchall()
    shares = {}
    for schema, table, stored in tables:
        live = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
        shares[f"{schema}.{table}"] = 1 - live / stored
    return shares


def _uncompressed_resource_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """fhir.* tables created before their JSON was declared zstd (RESOURCE_COLUMNS)."""
    tables = con.execute(
        "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'fhir' AND NOT temporary"
    ).fetchall()
    return {f"fhir.{name}" for name, sql in tables if "USING COMPRESSION ZSTD" not in sql.upper()}


def _compact_without_vacuum(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Turn DuckDB's vacuum off for this build and rewrite the tables whose deleted rows reached
    COMPACT_DELETED_SHARE (core.patient_link, whose comment a rewrite would lose, is only ever
    replaced whole), and the fhir.* tables a build before RESOURCE_COLUMNS left uncompressed.
    Returns the tables rewritten."""
    con.execute("SET max_vacuum_tasks = 0")
    shares = deleted_shares(con)
    compacted = sorted(
        {t for t, share in shares.items() if share >= COMPACT_DELETED_SHARE}
        | _uncompressed_resource_tables(con)
    )
    for table in compacted:
        schema, name = table.split(".")
        rewritten = f'"{schema}"."_compact_{name}"'
        if schema == "fhir":  # declared columns: a CREATE TABLE AS would drop their compression
            con.execute(f"CREATE TABLE {rewritten} ({RESOURCE_COLUMNS})")
            con.execute(f"INSERT INTO {rewritten} SELECT id, resource, batch_id FROM {table}")
        else:
            con.execute(f"CREATE TABLE {rewritten} AS SELECT * FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f'ALTER TABLE "{schema}"."_compact_{name}" RENAME TO "{name}"')
    if compacted:
        log.info(
            "rewrote %d table(s) whose deleted rows reached %.0f %% or whose resources were "
            "not in zstd yet: %s",
            len(compacted),
            COMPACT_DELETED_SHARE * 100,
            ", ".join(compacted),
        )
    return compacted


def _release_cache(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    """Hand DuckDB's cached blocks back to the OS before linkage, whose memory is Splink's and
    pandas': otherwise both sit on top of each other at the build's peak (~130 MB at 1M rows).

    Lowering the limit makes DuckDB evict (and free) everything it can; the limit is then put
    back for what follows linkage (exporting core.patient_link, the row counts).
    """
    try:
        con.execute("SET memory_limit = '32MB'")
    except duckdb.Error:  # DuckDB could not free that much: keep its cache, the build goes on
        log.info("DuckDB kept its cache before linkage (could not shrink to 32MB)")
    finally:
        con.execute(f"SET memory_limit = '{limit}'")


def build_warehouse(settings: Settings | None = None, full: bool = False) -> dict:
    """Apply new finished batches to warehouse/walnut.duckdb (rebuild from scratch when `full`).

    Returns counts only: path, status ("built" or "nothing new"), mode, batches applied,
    seconds and the row count of every table. With nothing new the file is left untouched.
    """
    from warehouse.export import publish_snapshot

    settings = settings or load_settings()
    started = time.monotonic()
    views = views_fingerprint()
    with build_lock(settings.warehouse):
        batches = finished_batches(settings)
        state = None if full else read_applied(settings.warehouse_db)
        full = state is None
        mode = "full" if full else "incremental"
        pending = batches if state is None else pending_batches(state[0], batches)
        if state is not None and not pending and state[1] == views:
            status, counts = "nothing new", _live_counts(settings)
        else:
            tmp = settings.warehouse / f".walnut.duckdb.{os.getpid()}.building"
            tmp.unlink(missing_ok=True)
            try:
                if not full:
                    shutil.copyfile(settings.warehouse_db, tmp)
                # core.* follows the delta only on top of core rows of the same views.
                same_views = state is not None and state[1] == views
                build = {"mode": mode, "views": views, "core": "delta" if same_views else "full"}
                counts, snapshot = _write_build(settings, tmp, pending, batches, build)
                os.replace(tmp, settings.warehouse_db)
            finally:
                tmp.unlink(missing_ok=True)
            publish_snapshot(settings.warehouse, snapshot)
            status = "built"
    seconds = round(time.monotonic() - started, 2)
    applied = 0 if status == "nothing new" else len(pending)
    log.info("warehouse %s (%s, %d batch(es) applied) in %.2f s", status, mode, applied, seconds)
    return {
        "path": str(settings.warehouse_db),
        "status": status,
        "mode": mode,
        "batches": applied,
        "seconds": seconds,
        "tables": counts,
    }
