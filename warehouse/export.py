"""Parquet export of the curated warehouse tables (core.*, cohort.*, gov.*) for Spark/pandas users.

Layout: warehouse/parquet/<schema>.<table>/hospital=<id>/data_0.parquet (zstd), unpartitioned
data_0.parquet for tables without a hospital column or without rows. `warehouse/parquet` is a
symlink to one complete snapshot folder; publishing swaps the link with one rename, so a reader
resolving it sees the old or the new export, never a mix. The previous snapshot is kept for
readers still walking it; older ones are removed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

CURATED_SCHEMAS = ("core", "cohort", "gov")
LINK = "parquet"
SNAPSHOTS = "parquet_snapshots"


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


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_snapshot(con: duckdb.DuckDBPyConnection, warehouse: Path) -> Path:
    """Export every curated table into a new, not yet published snapshot folder."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    snapshot = warehouse / SNAPSHOTS / f"{stamp}-{os.getpid()}"
    snapshot.mkdir(parents=True)
    for schema, table, partitioned in curated_tables(con):
        folder = snapshot / f"{schema}.{table}"
        rows = con.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]
        options = "FORMAT parquet, COMPRESSION zstd"
        if partitioned and rows:
            con.execute(
                f"COPY {schema}.{table} TO {_quote(folder)} "
                f"({options}, PARTITION_BY (hospital), FILENAME_PATTERN 'data_{{i}}')"
            )
        else:
            folder.mkdir()
            con.execute(f"COPY {schema}.{table} TO {_quote(folder / 'data_0.parquet')} ({options})")
    log.info("exported curated tables to parquet snapshot %s", snapshot.name)
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
