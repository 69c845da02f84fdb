"""A re-sent export landing beside its newer copy in one batch loads once: the repeated rows
are dropped as duplicates (counted, reconciled), not a failed uniqueness check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.batch_files import BatchFiles, read_json
from pipeline.settings import load_settings
from pipeline.sync import sync_hospital


def test_rows_repeated_in_a_second_file_of_the_batch_are_dropped_as_duplicates(
    tmp_path: Path,
) -> None:
    from synthetic.generate import generate_all

    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=6, seed=3)
    folder = settings.sources / "east_liver"
    alone = load_settings({"WALNUT_HOME": str(tmp_path / "alone"), "WALNUT_DEMO": "1"})
    shutil.copytree(folder, alone.sources / "east_liver")
    shutil.copyfile(folder / "检验.csv", folder / "检验_resent.csv")

    run = sync_hospital("east_liver", settings)
    reference = sync_hospital("east_liver", alone)

    assert run["status"] == reference["status"] == "success"
    stage = read_json(BatchFiles(settings, "east_liver", run["batch_id"]).gov / "stage.json")
    once = read_json(BatchFiles(alone, "east_liver", reference["batch_id"]).gov / "stage.json")
    lab, lab_once = stage["tables"]["lab"], once["tables"]["lab"]
    copied_rows = lab_once["read"]
    assert lab["read"] == 2 * copied_rows
    assert lab["staged"] == lab_once["staged"]
    dropped_once = lab_once["dropped"].get("duplicate_row", 0)
    assert lab["dropped"]["duplicate_row"] == dropped_once + lab_once["staged"]
    assert run["loaded"] == reference["loaded"] and run["resources"] == reference["resources"]
    staged = pq.read_table(BatchFiles(settings, "east_liver", run["batch_id"]).staging("lab"))
    assert staged.num_rows == lab_once["staged"]
