"""Deleted source rows find their resources in earlier batches by meta.source, and only those."""

from __future__ import annotations

from pathlib import Path

import orjson

from pipeline.batch_files import BatchFiles
from pipeline.settings import load_settings
from pipeline.sync import _tombstones


def _resource(rtype: str, rid: str, batch: str, row_hash: str, **extra: object) -> dict:
    meta = {"source": f"urn:walnut:south_general:{batch}:{row_hash}"}
    return {"resourceType": rtype, "id": rid, "meta": meta | extra.pop("meta", {}), **extra}


def _write(folder: Path, name: str, resources: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


def test_only_resources_of_deleted_rows_in_earlier_batches(tmp_path: Path) -> None:
    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    root = settings.fhir / "south_general"
    _write(
        root / "b1",
        "Observation.ndjson",
        [
            _resource("Observation", "o1", "b1", "h1", meta={"profile": ["http://x/p"]}),
            _resource("Observation", "o2", "b1", "h2"),
            # a decoy: the deleted hash in another "source" string, not in meta.source
            _resource("Observation", "o3", "b1", "h3", note=[{"text": "x"}], source="a:h1"),
        ],
    )
    _write(root / "b1", "Condition.ndjson", [_resource("Condition", "c1", "b1", "h1")])
    _write(root / "b3", "Observation.ndjson", [_resource("Observation", "o9", "b3", "h1")])
    files = BatchFiles(settings, "south_general", "b2")
    found = _tombstones(files, {"h1": "2025-07-02T00:00:00Z"})
    assert sorted((t["resourceType"], t["id"]) for t in found) == [
        ("Condition", "c1"),
        ("Observation", "o1"),
    ]
    assert {t["deleted_at"] for t in found} == {"2025-07-02T00:00:00Z"}
    assert _tombstones(files, {}) == []
