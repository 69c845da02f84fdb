"""Parquet export of the curated warehouse tables (core.*, cohort.*, gov.*) for Spark/pandas users.

Layout: warehouse/parquet/<schema>.<table>/hospital=<id>/data_0.parquet (zstd), unpartitioned
data_0.parquet for tables without a hospital column or without rows. `warehouse/parquet` is a
symlink to one complete snapshot folder; publishing swaps the link with one rename, so a reader
resolving it sees the old or the new export, never a mix. The previous snapshot is kept for
readers still walking it; older ones are removed.

A snapshot reuses what did not change: each table folder holds `_checksums.json` (rows and an
order-independent hash of every row, per partition), and a partition whose checksum, columns and
format equal the previous snapshot's is hard-linked from it instead of written again. Files are
never modified once written, so two snapshots can share them. Readers skip `_`-prefixed files
(pyarrow, Spark, Hive do), and a partition's row order may differ from a fresh export's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import duckdb

log = logging.getLogger(__name__)

CURATED_SCHEMAS = ("core", "cohort", "gov")
LINK = "parquet"
SNAPSHOTS = "parquet_snapshots"
# zstd level 1 instead of DuckDB's default 3: writing ~1M core.observation rows took 2.0
# instead of 2.95 CPU seconds, and the files came out no larger (59 vs 62 MB).
# Row groups of 32k rows instead of 122,880: under the snapshot's memory limit (0.6 of the
# 320MB default then) two writers buffering full-size groups of ~1M core.observation rows (a
# 120-byte lineage each) pushed the table's own blocks out and read them back: 2.4 s, now
# 1.55 s, files 2 % larger. Readers still get row groups to split work on.
OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 32768"
CHECKSUMS = "_checksums.json"
PARTITION = "hospital"
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # the folder name DuckDB (and Hive) give NULL
WRITERS = 2  # partitions written at once


def curated_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, bool]]:
    """(schema, table, has a hospital column) of every curated table, sorted."""
    rows = con.execute(
        """SELECT t.schema_name, t.table_name,
               bool_or(c.column_name = 'hospital') AS partitioned
        FROM duckdb_tables() t JOIN duckdb_columns() c
          ON c.database_name = t.database_name AND c.schema_name = t.schema_name
         AND c.table_name = t.table_name
        WHERE t.database_name = current_database() AND NOT t.temporary
        GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    return [(s, t, bool(p)) for s, t, p in rows if s in CURATED_SCHEMAS]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote(path: Path) -> str:
    return _literal(str(path))


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()


def _checksums(
    con: duckdb.DuckDBPyConnection, name: str, columns: list[tuple[str, str]], partitioned: bool
) -> list[list]:
    """[partition value (None: NULL or unpartitioned), rows, hash sum] per partition of one
    table; no partitions for an empty partitioned table, one part for an unpartitioned one.

    The sum of per-row hashes ignores row order, so equal sums mean equal rows (but for a 2^-64
    chance), however the table was rebuilt.
    """
    values = ", ".join(f'"{column}"' for column, _ in columns)
    digest = f"CAST(coalesce(sum(hash({values})), 0) AS VARCHAR)"
    if partitioned:
        sql = f"SELECT {PARTITION}, count(*), {digest} FROM {name} GROUP BY ALL ORDER BY ALL"
    else:
        sql = f"SELECT NULL, count(*), {digest} FROM {name}"
    return [list(row) for row in con.execute(sql).fetchall()]


def _read_manifest(folder: Path | None) -> dict | None:
    try:
        return json.loads((folder / CHECKSUMS).read_text(encoding="utf-8")) if folder else None
    except (OSError, ValueError):  # an older snapshot without checksums: nothing to reuse
        return None


def _reusable(previous: dict | None, manifest: dict, folder: Path) -> dict:
    """{partition value: previous sub-folder ("" for the table folder)} holding identical rows."""
    if not previous or {k: previous.get(k) for k in ("signature", "layout")} != {
        k: manifest[k] for k in ("signature", "layout")
    }:
        return {}
    old = {(value, rows, digest): sub for value, rows, digest, sub in previous["parts"]}
    return {
        value: old[(value, rows, digest)]
        for value, rows, digest in manifest["parts"]
        if (value, rows, digest) in old and (folder / old[(value, rows, digest)]).is_dir()
    }


def _link_files(source: Path, target: Path) -> None:
    """Hard-link the Parquet files of `source` into `target` (copy where links are refused)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.parquet")):
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def _partition_folder(value: str | None) -> str:
    """The Hive folder of one partition value, named as DuckDB's PARTITION_BY names it."""
    return f"{PARTITION}={NULL_PARTITION if value is None else quote(value, safe='')}"


def _write_partition(
    con: duckdb.DuckDBPyConnection, name: str, folder: Path, value: str | None
) -> None:
    """One partition's rows to <folder>/hospital=<value>/data_0.parquet, without the hospital
    column (the folder names it), as PARTITION_BY writes them."""
    target = folder / _partition_folder(value)
    target.mkdir(parents=True)
    match = f"{PARTITION} IS NULL" if value is None else f"{PARTITION} = {_literal(value)}"
    query = f"SELECT * EXCLUDE ({PARTITION}) FROM {name} WHERE {match}"
    con.execute(f"COPY ({query}) TO {_quote(target / 'data_0.parquet')} ({OPTIONS})")


def _write_partitions(
    con: duckdb.DuckDBPyConnection, name: str, folder: Path, values: list[str | None]
) -> None:
    """Write the given partitions, one COPY each, two at a time.

    One COPY per partition instead of PARTITION_BY: on ~1M core.observation rows PARTITION_BY
    took 1.9 s (3.8 CPU-s), separate COPYs 1.4 s, and two threads overlap one partition's
    scan with another's encoding. Each COPY has its own cursor on the same database.
    """
    if len(values) <= 1:
        for value in values:
            _write_partition(con, name, folder, value)
        return

    def write(value: str | None) -> None:
        cursor = con.cursor()
        try:
            _write_partition(cursor, name, folder, value)
        finally:
            cursor.close()

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(write, values))


def _export_single(
    con: duckdb.DuckDBPyConnection, name: str, folder: Path, old: Path | None, reuse: dict
) -> None:
    """One data_0.parquet for the whole table (no hospital column, or no rows)."""
    folder.mkdir()
    if old is not None and None in reuse:
        _link_files(old, folder)
    else:
        con.execute(f"COPY {name} TO {_quote(folder / 'data_0.parquet')} ({OPTIONS})")


def _export_partitioned(
    con: duckdb.DuckDBPyConnection,
    name: str,
    folder: Path,
    old: Path | None,
    reuse: dict,
    values: list[str | None],
) -> dict[str | None, str]:
    """Hive partitions by hospital; returns {partition value: sub-folder} as written."""
    _write_partitions(con, name, folder, [value for value in values if value not in reuse])
    folder.mkdir(exist_ok=True)
    for sub in reuse.values():
        _link_files(old / sub, folder / sub)
    return {value: reuse.get(value) or _partition_folder(value) for value in values}


def _export_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    partitioned: bool,
    snapshot: Path,
    previous: Path | None,
) -> tuple[int, int]:
    """Write or reuse one table's files and record its checksums; (reused, written) partitions."""
    folder, old = snapshot / name, (previous / name if previous else None)
    columns = _columns(con, *name.split("."))
    parts = _checksums(con, name, columns, partitioned)
    hive = bool(parts) and partitioned
    if not hive and partitioned:  # no rows: one empty file, as for an unpartitioned table
        parts = _checksums(con, name, columns, False)
    manifest = {
        "signature": json.dumps([OPTIONS, duckdb.__version__, columns]),
        "layout": "hive" if hive else "single",
    }
    reuse = _reusable(_read_manifest(old), {**manifest, "parts": parts}, old) if old else {}
    if hive:
        subs = _export_partitioned(con, name, folder, old, reuse, [p[0] for p in parts])
        manifest["parts"] = [[*part, subs[part[0]]] for part in parts if part[0] in subs]
    else:
        _export_single(con, name, folder, old, reuse)
        manifest["parts"] = [[*part, ""] for part in parts]
    (folder / CHECKSUMS).write_text(json.dumps(manifest), encoding="utf-8")
    return len(reuse), len(parts) - len(reuse)


@contextmanager
def _any_row_order(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Let COPY write rows in any order while the snapshot is written.

    Keeping insertion order made each COPY hold rows back to put them in order: under the
    snapshot's memory limit (0.6 of the 320MB default then) that pushed the table's own blocks
    out of DuckDB's cache, which read them back. ~1M core.observation rows: 1.6-1.9 s, now
    0.7 s. Readers get no row order from Parquet anyway; the checksums ignore it. The build's
    connection has the order off already; this keeps the re-export of a live warehouse
    (`export_parquet`) as fast.
    """
    (before,) = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {str(before).lower()}")


def write_snapshot(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    previous: Path | None = None,
    tables: Collection[str] | None = None,
    into: Path | None = None,
) -> Path:
    """Export curated tables (all, or those named in `tables`) into a snapshot folder that is
    not published yet: `into`, or a new one. Returns the folder.

    Partitions equal to those of `previous` (default: the published snapshot) are hard-linked
    from it rather than written again.
    """
    if previous is None and (warehouse / LINK).is_dir():
        previous = (warehouse / LINK).resolve()
    snapshot = into
    if snapshot is None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        snapshot = warehouse / SNAPSHOTS / f"{stamp}-{os.getpid()}"
        snapshot.mkdir(parents=True)
    reused = written = 0
    with _any_row_order(con):
        for schema, table, partitioned in curated_tables(con):
            name = f"{schema}.{table}"
            if tables is None or name in tables:
                r, w = _export_table(con, name, partitioned, snapshot, previous)
                reused, written = reused + r, written + w
    log.info(
        "exported curated tables to parquet snapshot %s: %d partition(s) written, "
        "%d reused from the previous snapshot",
        snapshot.name,
        written,
        reused,
    )
    return snapshot


def publish_snapshot(warehouse: Path, snapshot: Path) -> Path:
    """Point warehouse/parquet at `snapshot` atomically and prune all but the previous one."""
    link = warehouse / LINK
    previous = link.resolve() if link.is_symlink() else None
    if link.exists() and not link.is_symlink():  # a plain folder from an older layout
        shutil.rmtree(link)
    tmp_link = warehouse / f".{LINK}.{os.getpid()}.link"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(snapshot.relative_to(warehouse))
    os.replace(tmp_link, link)
    for old in (warehouse / SNAPSHOTS).iterdir():
        if old.resolve() not in {snapshot.resolve(), previous}:
            shutil.rmtree(old, ignore_errors=True)
    return link


def parquet_published(warehouse: Path) -> bool:
    """True when warehouse/parquet points at an existing snapshot."""
    return (warehouse / LINK).is_dir()


def export_parquet(con: duckdb.DuckDBPyConnection, warehouse: Path) -> Path:
    """Write and publish a Parquet snapshot of `con`'s curated tables; returns the link path."""
    return publish_snapshot(warehouse, write_snapshot(con, warehouse))
