"""Batch stages in tiny chunks write exactly what they write in one chunk per table."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch_files import BatchFiles
from pipeline.settings import DEFAULT_CHUNK_ROWS, Settings, load_settings
from pipeline.sync import BATCH_STAGES, land_sources, stage_batch, validate_batch
from transforms.errors import ValidationFailed

pytestmark = pytest.mark.slow

HOSPITALS = ("east_liver", "north_chest", "south_general")
CHUNK_ROWS = 7
# Columns that hold the time of the run, not data.
RUN_TIMES = ("run_at", "finished_at")


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Every hospital's synthetic exports landed once; tests stage copies of that landing."""
    from synthetic.generate import generate_all

    home = tmp_path_factory.mktemp("landed")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=10, seed=7)
    # A duplicate far from its original: dropped only if duplicates are found across chunks.
    lab = settings.sources / "east_liver" / "检验.csv"
    body = lab.read_bytes()
    lab.write_bytes(body + body.splitlines(keepends=True)[1])
    return home, {h: land_sources(h, settings) for h in HOSPITALS}


def _home(landed: tuple[Path, dict[str, str]], root: Path, chunk_rows: int) -> Settings:
    home = root / f"chunks_{chunk_rows}"
    shutil.copytree(landed[0] / "landing", home / "landing")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    return replace(settings, chunk_rows=chunk_rows)


def _sync(settings: Settings, hospital: str, batch_id: str) -> None:
    for _, stage in BATCH_STAGES:
        stage(hospital, batch_id, settings)


def _outputs(settings: Settings, hospital: str) -> dict[str, object]:
    """Every file the stages wrote for the hospital, as comparable values (run times dropped)."""
    out: dict[str, object] = {}
    for layer in (settings.staging, settings.gov, settings.fhir):
        for path in sorted((layer / hospital).rglob("*")):
            name = str(path.relative_to(settings.home))
            if path.suffix == ".parquet":
                frame = pq.read_table(path).to_pandas()
                out[name] = frame.drop(columns=[c for c in RUN_TIMES if c in frame])
                out[name + "#schema"] = pq.read_schema(path)
            elif path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
                out[name] = {k: v for k, v in data.items() if k not in RUN_TIMES}
            elif path.is_file():
                out[name] = path.read_bytes()
    return out


def _assert_same(chunked: dict[str, object], whole: dict[str, object]) -> None:
    assert sorted(chunked) == sorted(whole)
    for name, value in whole.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(chunked[name], value, obj=name)
        elif isinstance(value, pa.Schema):
            assert chunked[name].equals(value, check_metadata=True), name
        else:
            assert chunked[name] == value, name


@pytest.mark.parametrize("hospital", HOSPITALS)
def test_chunked_sync_writes_what_a_whole_table_sync_writes(
    landed: tuple[Path, dict[str, str]], tmp_path: Path, hospital: str
) -> None:
    batch_id = landed[1][hospital]
    whole = _home(landed, tmp_path, DEFAULT_CHUNK_ROWS)
    chunked = _home(landed, tmp_path, CHUNK_ROWS)
    _sync(whole, hospital, batch_id)
    _sync(chunked, hospital, batch_id)
    _assert_same(_outputs(chunked, hospital), _outputs(whole, hospital))
    stage = json.loads((BatchFiles(chunked, hospital, batch_id).gov / "stage.json").read_text())
    dropped = sum(t["dropped"].get("duplicate_row", 0) for t in stage["tables"].values())
    # the generator's duplicate row, plus the one appended to the east_liver lab export
    assert dropped == (2 if hospital == "east_liver" else 1)


def test_row_hash_uniqueness_is_judged_on_the_whole_table(
    landed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    hospital = "east_liver"
    batch_id = landed[1][hospital]
    settings = _home(landed, tmp_path, CHUNK_ROWS)
    stage_batch(hospital, batch_id, settings)
    files = BatchFiles(settings, hospital, batch_id)
    for path in files.staging("patient").parent.parent.glob(f"*/{batch_id}.parquet"):
        if path.parent.name != "patient":
            path.unlink()
    patients = pq.read_table(files.staging("patient"))
    assert patients.num_rows > CHUNK_ROWS  # the copy of row 1 lands in another chunk
    pq.write_table(pa.concat_tables([patients, patients.slice(0, 1)]), files.staging("patient"))
    with pytest.raises(ValidationFailed, match="patient.row_hash_unique"):
        validate_batch(hospital, batch_id, settings)
    results = pq.read_table(files.gov / "dq_result.parquet").to_pandas()
    unique = results[results["check_id"] == "patient.row_hash_unique"].iloc[0]
    assert (unique["evaluated"], unique["failed"]) == (patients.num_rows + 1, 2)
    assert not unique["success"]
