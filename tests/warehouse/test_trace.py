"""Lineage trace over a fabricated home: core row -> FHIR -> staging -> landed file -> mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.settings import load_settings
from tests.warehouse.warehouse_home import HOSPITAL, batch_id, patient, write_batch
from warehouse.build import build_warehouse
from warehouse.trace import TraceError, parse_lineage, trace_resource


def _home(tmp_path: Path, replay: bool = False):
    settings = load_settings({"WALNUT_HOME": str(tmp_path), "WALNUT_DEMO": "1"})
    origin = batch_id(1)
    write_batch(settings, 1, [patient("p1", origin)])
    landing = settings.landing / HOSPITAL / origin
    landing.mkdir(parents=True)
    manifest = {
        "hospital": HOSPITAL,
        "batch_id": origin,
        "files": [
            {
                "sources": ["patient"],
                "name": "患者.csv",
                "sha256": "ab" * 32,
                "size": 123,
                "received_at": "2026-01-01T00:00:00+00:00",
                "extra": {},
            }
        ],
    }
    (landing / "_manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    batch = f"{origin}-replay-001" if replay else origin
    if replay:
        fhir = settings.fhir / HOSPITAL / batch
        fhir.mkdir(parents=True)
        (fhir / "Patient.ndjson").write_text(json.dumps(patient("p2", batch)) + "\n", "utf-8")
    staging = settings.staging / HOSPITAL / "patient" / f"{batch}.parquet"
    staging.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "_source_file": ["患者.csv", "患者.csv"],
            "_source_row": [7, 9],
            "_source_key": [None, None],
            "_row_hash": ["row-p1", "row-p2"],
        }
    ).to_parquet(staging)
    gov = settings.gov / HOSPITAL / batch
    gov.mkdir(parents=True, exist_ok=True)
    stage = {"mapping_version": "v42", "tables": {}}
    if replay:
        stage |= {"kind": "replay", "replay_of": origin}
    (gov / "stage.json").write_text(json.dumps(stage), encoding="utf-8")
    return settings, origin, batch


def test_parse_lineage() -> None:
    assert parse_lineage("urn:walnut:east_liver:B1:abc") == {
        "hospital": "east_liver",
        "batch_id": "B1",
        "row_hash": "abc",
    }
    with pytest.raises(TraceError):
        parse_lineage("urn:other:x")


def test_trace_from_the_warehouse_row_to_the_landed_file(tmp_path: Path) -> None:
    settings, origin, _ = _home(tmp_path)
    build_warehouse(settings)
    chain = trace_resource("Patient/p1", settings)
    assert chain["warehouse"]["core_table"] == "core.patient"
    assert chain["warehouse"]["id_column"] == "patient_id"
    assert chain["fhir"]["file"] == f"fhir/{HOSPITAL}/{origin}/Patient.ndjson"
    assert chain["fhir"]["line"] == 1
    assert chain["staging"]["table"] == "patient" and chain["staging"]["source_row"] == 7
    assert chain["landed"] == {
        "batch_id": origin,
        "name": "患者.csv",
        "sha256": "ab" * 32,
        "size": 123,
        "received_at": "2026-01-01T00:00:00+00:00",
        "sources": ["patient"],
        "source_row": 7,
    }
    assert chain["mapping"]["mapping_version"] == "v42"


def test_trace_a_replayed_row_without_a_warehouse(tmp_path: Path) -> None:
    settings, origin, replay = _home(tmp_path, replay=True)
    chain = trace_resource("p2", settings)
    assert chain["warehouse"] is None
    assert chain["fhir"]["batch_id"] == replay
    assert chain["staging"]["source_row"] == 9
    assert chain["landed"]["batch_id"] == origin  # a replay reads its original landing
    assert chain["mapping"]["kind"] == "replay"
    assert chain["mapping"]["replay_of"] == origin
    with pytest.raises(TraceError, match="no FHIR resource"):
        trace_resource("missing", settings)
