"""Landing: new files become one batch with a manifest; landed files are never landed twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transforms.extract.landing import land_files, landed_batches, read_manifest, sha256_of
from transforms.mapping import load_site_mapping

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def mapping():
    return load_site_mapping(ROOT / "mappings" / "east_liver")


def test_lands_once_then_nothing_new(tmp_path: Path, mapping) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "患者.csv").write_bytes("住院号\r\nEL1\r\n".encode("gbk"))
    (source / "检验.csv").write_bytes("住院号\r\nEL1\r\n".encode("gbk") + b"x")
    (source / "notes.txt").write_text("not an export")
    landing = tmp_path / "landing"
    batch = land_files(mapping, source, landing)
    assert batch is not None and landed_batches(landing) == [batch]
    files = {f.name: f for f in read_manifest(landing / batch)}
    assert set(files) == {"患者.csv", "检验.csv"}
    assert files["患者.csv"].sources == ["patient"]
    assert files["检验.csv"].sha256 == sha256_of(source / "检验.csv")
    assert files["检验.csv"].size == (source / "检验.csv").stat().st_size
    manifest = json.loads((landing / batch / "_manifest.json").read_text("utf-8"))
    assert manifest["batch_id"] == batch and manifest["hospital"] == "east_liver"
    assert land_files(mapping, source, landing) is None
    (source / "随访.csv").write_bytes(b"\xef\xbb\xbf" + "住院号\r\n".encode())
    second = land_files(mapping, source, landing)
    assert [f.name for f in read_manifest(landing / second)] == ["随访.csv"]


def test_missing_source_folder_says_what_to_do(tmp_path: Path, mapping) -> None:
    with pytest.raises(FileNotFoundError, match="run `walnut demo-data`"):
        land_files(mapping, tmp_path / "nowhere", tmp_path / "landing")


def test_failed_database_extract_leaves_no_batch(tmp_path: Path, mapping) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "患者.csv").write_bytes("住院号\r\nEL1\r\n".encode("gbk"))

    def broken(mapping, partial, received):
        (partial / "chunk.parquet").write_bytes(b"half")
        raise ConnectionError("database went away")

    landing = tmp_path / "landing"
    with pytest.raises(ConnectionError):
        land_files(mapping, source, landing, land_database=broken)
    assert list(landing.iterdir()) == []
    assert land_files(mapping, source, landing) is not None
