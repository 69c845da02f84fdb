"""Atomic publish: readers see the old or the new warehouse, never a mix; one build at a time;
Parquet export swapped in the same way and readable by pandas."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.settings import Settings, load_settings
from tests.warehouse.warehouse_home import batch_id, condition, patient, write_batch
from warehouse.build import BuildLocked, build_lock, build_warehouse
from warehouse.export import SNAPSHOTS, write_snapshot

ROOT = Path(__file__).resolve().parents[2]
BUILDS = 4

# Runs in another process: each round lands one batch (one patient + one condition) and
# builds; after the first build it waits for a line on stdin, so the test can check its
# long-held reader connection and start the reconnecting reader thread.
BUILDER = textwrap.dedent(
    """
    import sys
    from pipeline.settings import load_settings
    from tests.warehouse.warehouse_home import batch_id, condition, patient, write_batch
    from warehouse.build import build_warehouse

    settings = load_settings({"WALNUT_HOME": sys.argv[1]})
    for n in range(2, 2 + int(sys.argv[2])):
        b = batch_id(n)
        write_batch(settings, n, [patient(f"p{n}", b), condition(f"c{n}", f"p{n}", b)])
        assert build_warehouse(settings)["status"] == "built"
        if n == 2:
            print("built", flush=True)
            sys.stdin.readline()
    """
)

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from warehouse.build import build_lock

    with build_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.read()
    """
)

# Several tables read in one transaction: a mix of two builds would break k == k == k.
OBSERVE = (
    "SELECT (SELECT count(*) FROM core.patient), (SELECT count(*) FROM core.condition), "
    "(SELECT count(*) FROM gov.load_run), (SELECT count(*) FROM gov.applied_batch)"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = load_settings({"WALNUT_HOME": str(tmp_path / "home")})
    b = batch_id(1)
    write_batch(settings, 1, [patient("p1", b), condition("c1", "p1", b)])
    build_warehouse(settings)
    return settings


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True, **kwargs
    )


def _observe(db: Path) -> tuple:
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("BEGIN TRANSACTION")
        row = con.execute(OBSERVE).fetchone()
        # A second read in the same transaction must agree with the first.
        assert con.execute("SELECT count(*) FROM core.patient").fetchone()[0] == row[0]
        con.execute("COMMIT")
        return row
    finally:
        con.close()


def test_open_reader_keeps_old_warehouse_and_does_not_block_the_swap(settings: Settings) -> None:
    db = settings.warehouse_db
    held = duckdb.connect(str(db), read_only=True)
    try:
        old_inode = db.stat().st_ino
        b = batch_id(2)
        write_batch(settings, 2, [patient("p2", b), condition("c2", "p2", b)])
        assert build_warehouse(settings)["status"] == "built"
        assert db.stat().st_ino != old_inode  # a new file was renamed over the old one
        assert held.execute(OBSERVE).fetchone() == (1, 1, 1, 1)
    finally:
        held.close()
    assert _observe(db) == (2, 2, 2, 2)


@pytest.mark.slow
def test_reader_sees_old_or_new_warehouse_never_a_mix(settings: Settings) -> None:
    """~10-20 s: a builder process and a reconnecting reader thread race on a loaded machine."""
    db = settings.warehouse_db
    held = duckdb.connect(str(db), read_only=True)  # stays open while the file is replaced
    old_state = held.execute(OBSERVE).fetchone()
    builder = _python(
        BUILDER, str(settings.home), str(BUILDS), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    observed: list[tuple] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def read_loop() -> None:
        while not stop.is_set():
            try:
                observed.append(_observe(db))
            except Exception as exc:  # reported by the main thread
                errors.append(exc)
                return
            time.sleep(0.005)  # leave the (small) CI machine's cores to the builder

    reader = threading.Thread(target=read_loop)
    try:
        assert builder.stdout.readline().strip() == "built"
        # The rename did not wait for the open reader, and the reader still sees the old file.
        assert held.execute(OBSERVE).fetchone() == old_state == (1, 1, 1, 1)
        # A connection held open pins this process's DuckDB instance to the old file, so close
        # it before reconnecting: then every reconnect sees the warehouse of that moment.
        held.close()
        reader.start()
        builder.stdin.write("go\n")
        builder.stdin.flush()
        assert builder.wait(timeout=120) == 0
    finally:
        held.close()
        stop.set()
        if reader.is_alive():
            reader.join(timeout=30)
        if builder.poll() is None:
            builder.kill()
    observed.append(_observe(db))
    assert not errors, errors
    valid = {(k, k, k, k) for k in range(2, 2 + BUILDS)}
    assert set(observed) <= valid, set(observed) - valid
    assert observed[-1] == (1 + BUILDS,) * 4
    assert len(observed) >= 2


def test_second_concurrent_build_is_refused(settings: Settings) -> None:
    holder = _python(HOLDER, str(settings.warehouse), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BuildLocked, match="another warehouse build is running"):
            build_warehouse(settings)
        from pipeline.cli import app

        env = {"WALNUT_HOME": str(settings.home)}
        result = CliRunner().invoke(app, ["build"], env=env)
        assert result.exit_code == 2
        assert "another warehouse build is running" in " ".join(result.output.split())
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert build_warehouse(settings)["status"] == "nothing new"  # lock released


def test_lock_is_per_build_even_in_one_process(settings: Settings) -> None:
    with build_lock(settings.warehouse):
        with pytest.raises(BuildLocked):
            build_warehouse(settings, full=True)


def test_parquet_export_reads_back_with_identical_counts(settings: Settings) -> None:
    b = batch_id(2)
    write_batch(settings, 2, [patient("p2", b)])
    b = batch_id(3)
    north = [patient(p, b, hospital="north_chest") for p in ("x1", "x2")]
    write_batch(settings, 3, north, hospital="north_chest")
    result = build_warehouse(settings)
    parquet = settings.warehouse / "parquet"
    assert parquet.is_symlink()
    assert (parquet / "core.patient" / "hospital=east_liver" / "data_0.parquet").is_file()
    assert (parquet / "core.patient" / "hospital=north_chest" / "data_0.parquet").is_file()
    assert (parquet / "gov.build_run" / "data_0.parquet").is_file()  # no hospital column
    curated = {t: n for t, n in result["tables"].items() if not t.startswith("fhir.")}
    assert {p.name for p in parquet.iterdir()} == set(curated)
    for table, rows in curated.items():
        frame = pd.read_parquet(parquet / table)
        assert len(frame) == rows, table
    patients = pd.read_parquet(parquet / "core.patient")
    assert sorted(zip(patients["hospital"].astype(str), patients["patient_id"], strict=True)) == [
        ("east_liver", "p1"),
        ("east_liver", "p2"),
        ("north_chest", "x1"),
        ("north_chest", "x2"),
    ]
    assert len(list((settings.warehouse / SNAPSHOTS).iterdir())) == 2  # current + previous
    first_target = parquet.resolve()
    write_batch(settings, 4, [patient("p4", batch_id(4))])
    build_warehouse(settings)
    assert parquet.resolve() != first_target
    assert len(list((settings.warehouse / SNAPSHOTS).iterdir())) == 2
    assert len(pd.read_parquet(parquet / "core.patient")) == 5


def _inodes(folder: Path) -> dict[str, int]:
    """Inode of every Parquet file under a snapshot, by path relative to it."""
    return {str(p.relative_to(folder)): p.stat().st_ino for p in folder.rglob("*.parquet")}


def test_unchanged_parquet_partitions_are_reused_from_the_previous_snapshot(
    settings: Settings,
) -> None:
    parquet = settings.warehouse / "parquet"
    b = batch_id(2)
    north = [patient(p, b, hospital="north_chest") for p in ("x1", "x2")]
    write_batch(settings, 2, north, hospital="north_chest")
    build_warehouse(settings)
    first = _inodes(parquet.resolve())
    # A delta of north_chest only: every east_liver partition is a hard link of the previous
    # snapshot's file; north_chest's changed ones are written again, and so is gov.build_run.
    x1 = patient("x1", batch_id(3), gender="male", hospital="north_chest")
    write_batch(settings, 3, [x1], hospital="north_chest")
    build_warehouse(settings)
    second = _inodes(parquet.resolve())
    assert set(second) == set(first)
    kept = {path for path in second if second[path] == first[path]}
    assert "core.patient/hospital=east_liver/data_0.parquet" in kept
    assert "core.condition/hospital=east_liver/data_0.parquet" in kept
    assert "gov.load_run/hospital=east_liver/data_0.parquet" in kept
    assert "core.patient/hospital=north_chest/data_0.parquet" not in kept
    assert "gov.load_run/hospital=north_chest/data_0.parquet" not in kept
    assert "gov.build_run/data_0.parquet" not in kept
    patients = pd.read_parquet(parquet / "core.patient")
    assert sorted(zip(patients["patient_id"], patients["gender"], strict=True)) == [
        ("p1", "female"),
        ("x1", "male"),
        ("x2", "female"),
    ]
    # Nothing new but a forced full rebuild: the same rows, so every data file is reused but
    # the build's own bookkeeping (build runs, the time each batch was applied).
    build_warehouse(settings, full=True)
    third = _inodes(parquet.resolve())
    rewritten = {p for p in third if third[p] != second[p]}
    assert {p.split("/")[0] for p in rewritten} == {"gov.build_run", "gov.applied_batch"}


def test_changed_partition_with_the_same_row_count_is_written_again(settings: Settings) -> None:
    parquet = settings.warehouse / "parquet"
    before = _inodes(parquet.resolve())
    b = batch_id(2)
    write_batch(settings, 2, [patient("p1", b, gender="male")])  # p1 replaced, same count
    build_warehouse(settings)
    after = _inodes(parquet.resolve())
    assert (
        after["core.patient/hospital=east_liver/data_0.parquet"]
        != (before["core.patient/hospital=east_liver/data_0.parquet"])
    )
    assert pd.read_parquet(parquet / "core.patient")["gender"].tolist() == ["male"]
    assert (
        after["core.condition/hospital=east_liver/data_0.parquet"]
        == (before["core.condition/hospital=east_liver/data_0.parquet"])
    )


def test_partition_folders_and_rows_match_duckdbs_own_partitioned_copy(tmp_path: Path) -> None:
    """Partitions are written one COPY each; folders (NULL, spaces, '/', '%') and rows are
    what DuckDB's PARTITION_BY writes, so Hive readers see the same table."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core")
    con.execute(
        "CREATE TABLE core.sample AS SELECT * FROM (VALUES ('a b/c', 1), (NULL, 2), "
        "('east_liver', 3), ('x%y=z', 4), ('east_liver', 5)) v(hospital, n)"
    )
    snapshot = write_snapshot(con, tmp_path / "warehouse")
    reference = tmp_path / "reference"
    con.execute(f"COPY core.sample TO '{reference}' (FORMAT parquet, PARTITION_BY (hospital))")

    ours = snapshot / "core.sample"
    assert sorted(p.name for p in ours.iterdir() if p.is_dir()) == sorted(
        p.name for p in reference.iterdir()
    )
    read = "SELECT hospital, n FROM read_parquet('{}/*/*.parquet', hive_partitioning=true)"
    assert sorted(con.execute(read.format(ours)).fetchall(), key=str) == sorted(
        con.execute(read.format(reference)).fetchall(), key=str
    )
    assert con.execute(
        f"DESCRIBE SELECT * FROM '{ours}/hospital=east_liver/*.parquet'"
    ).fetchall() == (
        con.execute(
            f"DESCRIBE SELECT * FROM '{reference}/hospital=east_liver/*.parquet'"
        ).fetchall()
    )


@pytest.mark.parametrize("kept", [True, False])
def test_snapshot_leaves_the_connections_row_order_setting_as_it_found_it(
    tmp_path: Path, kept: bool
) -> None:
    """COPY may reorder rows while the snapshot is written (it held rows back to keep their
    order, which under the memory limit evicted the table's blocks); the build's own
    statements after it keep the setting they had."""
    con = duckdb.connect()
    con.execute(f"SET preserve_insertion_order = {str(kept).lower()}")
    con.execute("CREATE SCHEMA core")
    con.execute(
        "CREATE TABLE core.sample AS SELECT 'east_liver' AS hospital, range AS n FROM range(5)"
    )
    snapshot = write_snapshot(con, tmp_path / "warehouse")
    setting = "SELECT current_setting('preserve_insertion_order')"
    assert con.execute(setting).fetchone()[0] is kept
    files = f"'{snapshot}/core.sample/*/*.parquet'"
    assert sorted(r[0] for r in con.execute(f"SELECT n FROM {files}").fetchall()) == list(range(5))
