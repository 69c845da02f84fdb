"""Incremental warehouse build: newest-wins merge, tombstones, no-op reruns, full == incremental."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.settings import Settings, load_settings
from tests.warehouse.warehouse_home import (
    batch_id,
    condition,
    patient,
    snapshot,
    write_batch,
)
from warehouse import build as build_module
from warehouse.build import build_warehouse, resource_key_column


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"WALNUT_HOME": str(tmp_path / "home")})


def _query(settings: Settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _first_batch(settings: Settings) -> None:
    b1 = batch_id(1)
    write_batch(
        settings,
        1,
        [patient("p1", b1), patient("p2", b1), condition("c1", "p1", b1)],
    )


def _second_batch(settings: Settings) -> None:
    b2 = batch_id(2)
    write_batch(
        settings,
        2,
        [patient("p1", b2, gender="male"), patient("p3", b2), condition("c3", "p3", b2)],
        tombstones=[{"resourceType": "Patient", "id": "p2", "deleted_at": "2026-01-02T00:00:00Z"}],
    )


def test_first_build_loads_every_layer(settings: Settings) -> None:
    _first_batch(settings)
    result = build_warehouse(settings)
    assert result["status"] == "built" and result["mode"] == "full" and result["batches"] == 1
    assert result["tables"]["fhir.patient"] == 2
    assert result["tables"]["core.patient"] == 2
    assert result["tables"]["core.condition"] == 1
    assert result["tables"]["gov.load_run"] == 1
    assert result["tables"]["gov.applied_batch"] == 1
    assert _query(settings, "SELECT patient_id, gender, hospital FROM core.patient ORDER BY 1") == [
        ("p1", "female", "east_liver"),
        ("p2", "female", "east_liver"),
    ]


def test_second_build_with_nothing_new_skips_the_rewrite(settings: Settings) -> None:
    _first_batch(settings)
    first = build_warehouse(settings)
    before = snapshot(settings.warehouse_db)
    stat = settings.warehouse_db.stat()
    started = time.monotonic()
    second = build_warehouse(settings)
    assert time.monotonic() - started < 5  # no rewrite: counts only (loose for busy CI)
    assert second["status"] == "nothing new" and second["batches"] == 0
    assert second["tables"] == first["tables"]
    after = settings.warehouse_db.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert snapshot(settings.warehouse_db) == before


def test_incremental_merge_newest_wins_and_tombstone_deletes(settings: Settings) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    _second_batch(settings)
    result = build_warehouse(settings)
    assert result["status"] == "built" and result["mode"] == "incremental"
    assert result["batches"] == 1  # only the new batch is merged
    assert _query(settings, "SELECT id, batch_id FROM fhir.patient ORDER BY 1") == [
        ("p1", batch_id(2)),
        ("p3", batch_id(2)),
    ]
    assert _query(settings, "SELECT patient_id, gender FROM core.patient ORDER BY 1") == [
        ("p1", "male"),
        ("p3", "female"),
    ]
    assert _query(settings, "SELECT hospital, resource_type, id, batch_id FROM gov.tombstone") == [
        ("east_liver", "Patient", "p2", batch_id(2))
    ]
    assert _query(settings, "SELECT count(*) FROM gov.applied_batch") == [(2,)]
    assert _query(
        settings, "SELECT mode, batches_applied FROM gov.build_run ORDER BY built_at"
    ) == [
        ("full", 1),
        ("incremental", 1),
    ]


def test_incremental_equals_full_rebuild(settings: Settings) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    _second_batch(settings)
    build_warehouse(settings)
    incremental = snapshot(settings.warehouse_db)
    full = build_warehouse(settings, full=True)
    assert full["status"] == "built" and full["mode"] == "full" and full["batches"] == 2
    assert snapshot(settings.warehouse_db) == incremental
    assert len(incremental["core.patient"]) == 2


def _tamper(settings: Settings, sql: str) -> None:
    """Change the live warehouse behind the build's back, to see which rows a build rewrites."""
    con = duckdb.connect(str(settings.warehouse_db))
    try:
        con.execute(sql)
    finally:
        con.close()


def test_incremental_build_flattens_only_the_merged_resources(settings: Settings) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    _tamper(
        settings, "UPDATE core.condition SET icd10_code = 'untouched' WHERE condition_id = 'c1'"
    )
    _second_batch(settings)  # p1 replaced, p2 tombstoned, p3 and c3 new; c1 not in the batch
    build_warehouse(settings)
    assert _query(settings, "SELECT condition_id, icd10_code FROM core.condition ORDER BY 1") == [
        ("c1", "untouched"),
        ("c3", "C22.0"),
    ]
    assert _query(settings, "SELECT patient_id, gender, batch_id FROM core.patient ORDER BY 1") == [
        ("p1", "male", batch_id(2)),
        ("p3", "female", batch_id(2)),
    ]
    build_warehouse(settings, full=True)
    assert _query(settings, "SELECT icd10_code FROM core.condition WHERE condition_id = 'c1'") == [
        ("C22.0",)
    ]


def test_changed_views_fingerprint_recomputes_every_core_row(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    _tamper(settings, "UPDATE core.condition SET icd10_code = 'stale' WHERE condition_id = 'c1'")
    _tamper(settings, "UPDATE build.view_sql SET sql = 'SELECT 1'")  # compiled again, not read
    monkeypatch.setattr(build_module, "views_fingerprint", lambda: "changed")
    _second_batch(settings)
    build_warehouse(settings)
    assert _query(settings, "SELECT icd10_code FROM core.condition WHERE condition_id = 'c1'") == [
        ("C22.0",)
    ]
    assert _query(settings, "SELECT DISTINCT views_sha256 FROM build.view_sql") == [("changed",)]


def test_incremental_build_reuses_the_compiled_views_of_its_fingerprint(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    stored = _query(settings, "SELECT DISTINCT views_sha256 FROM build.view_sql")
    assert stored == [(build_module.views_fingerprint(),)]

    def no_compiler() -> dict[str, str]:
        raise AssertionError("the compiled views were not reused")

    with monkeypatch.context() as patched:
        patched.setattr(build_module, "compile_views", no_compiler)
        _second_batch(settings)
        build_warehouse(settings)
    incremental = snapshot(settings.warehouse_db)
    build_warehouse(settings, full=True)
    assert snapshot(settings.warehouse_db) == incremental
    # Kept out of the curated tables: neither counted nor exported.
    assert not any(t.startswith("build.") for t in build_warehouse(settings)["tables"])
    assert not list(settings.warehouse.rglob("*view_sql*"))


def test_views_fingerprint_follows_the_views_and_their_compiler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("VIEWS_DIR", "VIEWDEF_DIR"):
        copy = tmp_path / name
        shutil.copytree(getattr(build_module, name), copy, ignore=shutil.ignore_patterns("__py*"))
        monkeypatch.setattr(build_module, name, copy)
    before = build_module.views_fingerprint()
    with (tmp_path / "VIEWDEF_DIR" / "compile.py").open("a", encoding="utf-8") as handle:
        handle.write("# a compiler change can change core rows\n")
    assert build_module.views_fingerprint() != before


def test_resource_key_column_is_a_top_level_get_resource_key() -> None:
    key = {"name": "condition_id", "path": "getResourceKey()"}
    code = {"name": "code", "path": "code.coding.code.first()"}
    assert resource_key_column({"select": [{"column": [code, key]}]}) == "condition_id"
    # Under forEach, or absent: no key, so the build recomputes the view in full.
    assert resource_key_column({"select": [{"forEach": "code.coding", "column": [key]}]}) is None
    assert resource_key_column({"select": [{"column": [code]}]}) is None


def test_tombstone_is_not_undone_by_an_older_batch_but_is_by_a_newer(settings: Settings) -> None:
    _first_batch(settings)
    _second_batch(settings)
    build_warehouse(settings)
    # A batch landed earlier than the tombstone but applied later (for example a replay).
    write_batch(settings, 0, [patient("p2", batch_id(0), gender="male")])
    build_warehouse(settings)
    assert _query(settings, "SELECT count(*) FROM core.patient WHERE patient_id = 'p2'") == [(0,)]
    # The hospital re-sends the record after the deletion: it comes back.
    write_batch(settings, 3, [patient("p2", batch_id(3), gender="male")])
    build_warehouse(settings)
    assert _query(
        settings, "SELECT gender, batch_id FROM core.patient WHERE patient_id = 'p2'"
    ) == [("male", batch_id(3))]


def test_older_batch_never_overwrites_newer_version(settings: Settings) -> None:
    _second_batch(settings)
    build_warehouse(settings)
    _first_batch(settings)  # landed first, applied second
    build_warehouse(settings)
    assert _query(
        settings, "SELECT gender, batch_id FROM core.patient WHERE patient_id = 'p1'"
    ) == [("male", batch_id(2))]
    assert _query(settings, "SELECT count(*) FROM core.patient WHERE patient_id = 'p2'") == [(0,)]


def test_replayed_batch_is_applied_again(settings: Settings) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    b1 = batch_id(1)
    write_batch(
        settings,
        1,
        [patient("p1", b1, gender="unknown"), patient("p2", b1), condition("c1", "p1", b1)],
        finished_at="2026-02-01T00:00:00+00:00",
    )
    result = build_warehouse(settings)
    assert result["status"] == "built" and result["batches"] == 1
    assert _query(settings, "SELECT gender FROM core.patient WHERE patient_id = 'p1'") == [
        ("unknown",)
    ]


def test_changed_views_recompute_core_without_new_batches(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    monkeypatch.setattr(build_module, "views_fingerprint", lambda: "changed")
    result = build_warehouse(settings)
    assert result["status"] == "built" and result["batches"] == 0
    assert result["tables"]["core.patient"] == 2


def test_legacy_warehouse_is_rebuilt_in_full(settings: Settings) -> None:
    _first_batch(settings)
    settings.warehouse.mkdir(parents=True)
    con = duckdb.connect(str(settings.warehouse_db))
    con.execute("CREATE SCHEMA fhir")
    con.execute("CREATE TABLE fhir.patient (resource JSON, batch_id VARCHAR)")
    con.close()
    result = build_warehouse(settings)
    assert result["mode"] == "full" and result["tables"]["core.patient"] == 2


def test_merge_keeps_one_version_per_id_newest_batch_then_largest_text(tmp_path: Path) -> None:
    """Ids read once are kept as they are; an id read twice keeps the newer batch's version,
    and within one batch the larger JSON text (a deterministic pick); id-less lines form one
    group, as they always did."""
    older, newer = tmp_path / "h" / "20260101T000000Z-a", tmp_path / "h" / "20260102T000000Z-b"
    older.mkdir(parents=True)
    newer.mkdir(parents=True)
    (older / "Patient.ndjson").write_text(
        '{"id": "once", "v": 1}\n{"id": "same", "v": 1}\n{"id": "same", "v": 2}\n'
        '{"id": "moved", "v": 1}\n{"v": "x"}\n{"v": "y"}\n',
        encoding="utf-8",
    )
    (newer / "Patient.ndjson").write_text('{"id": "moved", "v": 0}\n', encoding="utf-8")
    con = duckdb.connect()
    con.execute("CREATE SCHEMA fhir")
    build_module._create_changed(con)
    build_module._merge_resources(
        con, "fhir.patient", [older / "Patient.ndjson", newer / "Patient.ndjson"]
    )
    rows = con.execute(
        "SELECT id, resource ->> 'v', batch_id FROM fhir.patient ORDER BY id NULLS LAST"
    ).fetchall()
    assert rows == [
        ("moved", "0", newer.name),
        ("once", "1", older.name),
        ("same", "2", older.name),
        (None, "y", older.name),
    ]


def _max_vacuum_tasks(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0])


def test_incremental_builds_rewrite_a_table_only_past_the_deleted_share(tmp_path: Path) -> None:
    """DuckDB's vacuum is off; a table is rewritten once its deleted rows reach the share."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for schema in ("fhir", "core", "gov"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute(f"CREATE TABLE fhir.observation ({build_module.RESOURCE_COLUMNS})")
    con.execute("INSERT INTO fhir.observation SELECT range, '{}', 'b' FROM range(1000)")
    for table in ("core.observation", "gov.load_run"):
        con.execute(
            f"CREATE TABLE {table} AS SELECT range AS i, 'x' || range AS s FROM range(1000)"
        )
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM fhir.observation WHERE id::INT % 100 = 0")  # 1 %: left marked
    con.execute("DELETE FROM core.observation WHERE i % 4 = 0")  # 25 %: rewritten
    con.execute("DELETE FROM gov.load_run WHERE i % 2 = 0")  # gov tables are replaced whole
    con.execute("CHECKPOINT")
    shares = build_module.deleted_shares(con)
    assert shares == {"core.observation": 0.25, "fhir.observation": pytest.approx(0.01)}
    kept = con.execute("SELECT * FROM core.observation ORDER BY i").fetchall()

    assert build_module._compact_without_vacuum(con) == ["core.observation"]
    assert _max_vacuum_tasks(con) == 0
    assert build_module.deleted_shares(con)["core.observation"] == 0
    assert con.execute("SELECT * FROM core.observation ORDER BY i").fetchall() == kept
    columns = "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'observation'"
    assert con.execute(columns + " AND schema_name = 'core'").fetchall() == [
        ("i", "BIGINT"),
        ("s", "VARCHAR"),
    ]
    assert build_module.deleted_shares(con)["fhir.observation"] == pytest.approx(0.01)


def _resource_compression(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {
        row[0]
        for row in con.execute(
            f"SELECT compression FROM pragma_storage_info('{table}') "
            "WHERE column_name = 'resource' AND segment_type <> 'VALIDITY'"
        ).fetchall()
    }


def test_resources_are_stored_in_zstd_also_after_a_compaction(
    settings: Settings, tmp_path: Path
) -> None:
    """fhir.* keeps its JSON text in zstd (DuckDB's own string compression made the file twice
    as large); a table rewritten past the deleted share keeps it so, and keeps its rows."""
    _first_batch(settings)
    build_warehouse(settings)
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        assert _resource_compression(con, "fhir.patient") == {"ZSTD"}
    finally:
        con.close()

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA fhir")
    con.execute(f"CREATE TABLE fhir.observation ({build_module.RESOURCE_COLUMNS})")
    con.execute(
        "INSERT INTO fhir.observation "
        "SELECT 'o' || range, json_object('v', range), 'b' FROM range(1000)"
    )
    con.execute("CHECKPOINT")
    con.execute("DELETE FROM fhir.observation WHERE (resource ->> 'v')::INT % 10 < 3")  # 30 %
    con.execute("CHECKPOINT")
    kept = con.execute("SELECT * FROM fhir.observation ORDER BY id").fetchall()

    assert build_module._compact_without_vacuum(con) == ["fhir.observation"]
    con.execute("CHECKPOINT")
    assert con.execute("SELECT * FROM fhir.observation ORDER BY id").fetchall() == kept
    assert len(kept) == 700
    assert _resource_compression(con, "fhir.observation") == {"ZSTD"}
    con.close()


def test_an_older_warehouse_gets_its_resources_in_zstd_at_the_next_build(
    settings: Settings,
) -> None:
    """A fhir.* table from before RESOURCE_COLUMNS is rewritten once, rows unchanged."""
    _first_batch(settings)
    build_warehouse(settings)
    con = duckdb.connect(str(settings.warehouse_db))
    con.execute("CREATE TABLE fhir.old AS SELECT * FROM fhir.patient")  # no declared compression
    con.execute("DROP TABLE fhir.patient")
    con.execute("ALTER TABLE fhir.old RENAME TO patient")
    con.execute("CHECKPOINT")
    assert _resource_compression(con, "fhir.patient") != {"ZSTD"}
    con.close()

    _second_batch(settings)
    assert build_warehouse(settings)["mode"] == "incremental"
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        assert _resource_compression(con, "fhir.patient") == {"ZSTD"}
        ids = con.execute("SELECT id, batch_id FROM fhir.patient ORDER BY id").fetchall()
        assert ids == [("p1", batch_id(2)), ("p3", batch_id(2))]
    finally:
        con.close()


def test_incremental_build_reads_only_the_new_batches_gov_files(settings: Settings) -> None:
    """gov run rows of applied batches stay as loaded: their files are not read again (a year
    of nightlies is ~6,500 of them); a full rebuild reads them all."""
    _first_batch(settings)
    build_warehouse(settings)
    recon = settings.gov / "east_liver" / batch_id(1) / "reconciliation.parquet"
    frame = pd.read_parquet(recon)
    frame["read"] = 999
    frame.to_parquet(recon, index=False)
    _second_batch(settings)
    build_warehouse(settings)
    query = "SELECT batch_id, read FROM gov.reconciliation ORDER BY 1"
    assert _query(settings, query) == [(batch_id(1), 3), (batch_id(2), 3)]
    build_warehouse(settings, full=True)
    assert _query(settings, query) == [(batch_id(1), 999), (batch_id(2), 3)]


def test_a_new_gov_file_that_does_not_fit_reloads_the_gov_tables_in_full(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    _first_batch(settings)
    build_warehouse(settings)
    _second_batch(settings)
    recon = settings.gov / "east_liver" / batch_id(2) / "reconciliation.parquet"
    frame = pd.read_parquet(recon)
    frame["new_column"] = "x"
    frame.to_parquet(recon, index=False)
    with caplog.at_level(logging.INFO, logger="warehouse.build"):
        build_warehouse(settings)
    assert "gov tables reloaded in full" in caplog.text
    assert _query(settings, "SELECT count(*), count(new_column) FROM gov.reconciliation") == [
        (2, 1)
    ]


# Spies on the snapshot in a fresh interpreter: were pandas and the replay module (which reads
# landed files with it) imported by then?
_PANDAS_AT_SNAPSHOT = """
import sys
import warehouse.export as export
from warehouse.build import build_warehouse

write_snapshot = export.write_snapshot

def spy(*args, **kwargs):
    if "tables" in kwargs and "core.patient_link" not in kwargs["tables"]:
        print(sorted(m for m in ("pandas", "pipeline.replay") if m in sys.modules))
    return write_snapshot(*args, **kwargs)

export.write_snapshot = spy
build_warehouse(full=sys.argv[1] == "full")
"""


@pytest.mark.parametrize("mode", ["full", "incremental"])
def test_a_build_imports_pandas_only_after_its_snapshot(settings: Settings, mode: str) -> None:
    """pandas imported before DuckDB's work sat below DuckDB's cache: the 1 % delta's build at
    ~1M rows peaked at 437 MB RSS instead of 358 MB. Linkage imports it after the snapshot."""
    _first_batch(settings)
    build_warehouse(settings)
    _second_batch(settings)
    done = subprocess.run(
        [sys.executable, "-c", _PANDAS_AT_SNAPSHOT, mode],
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ | {"WALNUT_HOME": str(settings.home)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.splitlines() == ["[]"]
