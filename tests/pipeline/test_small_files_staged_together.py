"""Small chunks of one source are standardised together, with the same rows and lineage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import pipeline.sync as sync
from pipeline.batch_files import BatchFiles, read_json
from pipeline.settings import Settings, load_settings

HOSPITAL = "south_general"  # its lab feed lands one HL7 file per day


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from synthetic.generate import generate_all

    home = tmp_path_factory.mktemp("landed")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=77, seed=7)
    feed = sorted((settings.sources / HOSPITAL / "hl7").glob("lab_*.hl7"))
    # A day's file sent again under a new name: its rows are duplicates of another file's.
    shutil.copyfile(feed[0], feed[0].with_name("lab_99991231.hl7"))
    return home, sync.land_sources(HOSPITAL, settings)


def _stage(
    landed: tuple[Path, str], root: Path, monkeypatch: pytest.MonkeyPatch, per_chunk: bool
) -> tuple[Settings, list[tuple[str, int]]]:
    """Stage a copy of the landing, each reader chunk alone when `per_chunk` (as before small
    chunks were joined); (settings, (table, cells) of every standardise call)."""
    home = root / ("per_chunk" if per_chunk else "together")
    shutil.copytree(landed[0] / "landing", home / "landing")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    calls: list[tuple[str, int]] = []
    real, add = sync.standardize_table, sync._Staging.add

    def counted(raw: pd.DataFrame, table: str, *args: object, **kwargs: object) -> object:
        calls.append((table, raw.size))
        return real(raw, table, *args, **kwargs)

    def add_alone(staging: sync._Staging, *args: object) -> None:
        add(staging, *args)
        staging.flush()

    with monkeypatch.context() as patch:
        patch.setattr(sync, "standardize_table", counted)
        if per_chunk:
            patch.setattr(sync._Staging, "add", add_alone)
        sync.stage_batch(HOSPITAL, landed[1], settings)
    return settings, calls


def _staged(settings: Settings, batch_id: str, table: str) -> pd.DataFrame:
    return pq.read_table(BatchFiles(settings, HOSPITAL, batch_id).staging(table)).to_pandas()


def test_a_feed_of_daily_files_is_standardised_in_few_calls_with_per_file_lineage(
    landed: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One call per ~chunk_rows rows, not per file; each row still names its own file; a
    re-sent file's rows are dropped as duplicates of the earlier file's."""
    feed_files = len(list((landed[0] / "sources" / HOSPITAL / "hl7").glob("lab_*.hl7")))
    together, calls = _stage(landed, tmp_path, monkeypatch, per_chunk=False)
    lab_calls = [rows for table, rows in calls if table == "lab"]
    assert feed_files >= 10
    assert len(lab_calls) <= 2

    one_by_one, calls = _stage(landed, tmp_path, monkeypatch, per_chunk=True)
    assert len([1 for table, _ in calls if table == "lab"]) >= feed_files

    # Wide rows: joined up to a cell budget (memory), so a few calls instead of one.
    monkeypatch.setattr(sync, "JOIN_CELLS", max(lab_calls) // 4)
    by_cells, calls = _stage(landed, tmp_path / "cells", monkeypatch, per_chunk=False)
    assert 2 < len([1 for table, _ in calls if table == "lab"]) < feed_files
    # within the budget: a chunk is never joined with the one that would pass it
    assert max(cells for table, cells in calls if table == "lab") <= sync.JOIN_CELLS

    for table in ("lab", "patient", "diagnosis", "treatment", "followup"):
        expected = _staged(one_by_one, landed[1], table)
        for staged in (together, by_cells):
            pd.testing.assert_frame_equal(_staged(staged, landed[1], table), expected, obj=table)
    lab = _staged(together, landed[1], "lab")
    from_feed = lab[lab["_source_file"].str.startswith("lab_")]
    assert from_feed["_source_file"].nunique() == feed_files - 1  # the re-sent day staged none
    assert "lab_99991231.hl7" not in set(from_feed["_source_file"])
    # Lineage rows count from 1 in every file.
    assert (from_feed.groupby("_source_file")["_source_row"].min() == 1).all()
    stage = read_json(BatchFiles(together, HOSPITAL, landed[1]).gov / "stage.json")
    assert stage["tables"]["lab"]["dropped"]["duplicate_row"] >= 1
