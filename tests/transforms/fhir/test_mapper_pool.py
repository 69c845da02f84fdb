"""map_table_ndjson: the process pool gives the same NDJSON, order and errors as serial mapping."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pandas as pd
import pytest

from pipeline.batch_files import NdjsonAppender
from transforms.fhir import mapper


def _encoded(resources: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in resources)


@pytest.fixture
def many_labs(lab_frame: pd.DataFrame) -> pd.DataFrame:
    """40 copies of the lab rows with distinct hashes and times; every 7th row unmappable."""
    frames = []
    for copy in range(40):
        part = lab_frame.copy()
        part["_row_hash"] = part["_row_hash"] + f"-{copy}"
        part["collected_at"] = part["collected_at"] + pd.Timedelta(minutes=copy)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    frame.loc[frame.index % 7 == 3, "unit"] = None
    return frame


def test_pool_matches_serial(monkeypatch: pytest.MonkeyPatch, many_labs: pd.DataFrame) -> None:
    monkeypatch.setattr(mapper, "POOL_MIN_ROWS", 10)  # chunks of 15 rows over 2 workers
    serial = mapper.map_table("lab", many_labs, "h1")
    pooled = mapper.map_table_ndjson("lab", many_labs, "h1", workers=2)
    assert len(pooled.ndjson["Observation"]) > 1  # really came from several chunks
    assert b"".join(pooled.ndjson["Observation"]) == _encoded(serial.resources["Observation"])
    assert pooled.counts == {"Observation": len(serial.resources["Observation"])}
    assert pooled.errors == serial.errors
    assert len(pooled.errors) == (many_labs.index % 7 == 3).sum()
    assert pooled.errors[0][1].startswith("Observation.valueQuantity.unit")


def _worker_pid() -> int:
    return os.getpid()


def test_one_pool_serves_a_whole_batch(
    monkeypatch: pytest.MonkeyPatch, many_labs: pd.DataFrame
) -> None:
    """Frames mapped on one `mapping_pool` equal serial mapping, on the same two workers."""
    monkeypatch.setattr(mapper, "POOL_MIN_ROWS", 10)
    halves = (many_labs.iloc[: len(many_labs) // 2], many_labs.iloc[len(many_labs) // 2 :])
    with mapper.mapping_pool(2) as pool:
        assert pool is not None
        pooled = [mapper.map_table_ndjson("lab", half, "h1", pool=pool) for half in halves]
        pids = {pool.submit(_worker_pid).result() for _ in range(20)}
    for half, result in zip(halves, pooled, strict=True):
        serial = mapper.map_table("lab", half.reset_index(drop=True), "h1")
        assert b"".join(result.ndjson["Observation"]) == _encoded(serial.resources["Observation"])
        assert result.errors == serial.errors
    assert len(pids) <= 2 and os.getpid() not in pids


def test_no_pool_for_one_worker() -> None:
    with mapper.mapping_pool(1) as pool:
        assert pool is None


def test_serial_path_and_parts_writer(tmp_path: Path, many_labs: pd.DataFrame) -> None:
    result = mapper.map_table_ndjson("lab", many_labs, "h1", workers=1)
    path = tmp_path / "fhir" / "Observation.ndjson"
    writer = NdjsonAppender(path.parent)
    writer.write("Observation", result.ndjson["Observation"])
    writer.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == result.counts["Observation"] == len(many_labs) - len(result.errors)
    assert orjson.loads(lines[0])["resourceType"] == "Observation"
    assert not list(path.parent.glob("*.partial"))


def test_workers_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALNUT_FHIR_WORKERS", "3")
    assert mapper.fhir_workers() == 3
    monkeypatch.setenv("WALNUT_FHIR_WORKERS", "")
    assert mapper.fhir_workers() >= 1
