"""map_table: validation with R4B models, row errors, stable ids, NDJSON output."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest
from fhir.resources.R4B import get_fhir_model_class

from transforms.errors import ConfigError
from transforms.fhir.mapper import map_table, write_ndjson

TABLES = ["patient", "diagnosis", "lab", "treatment", "followup"]


@pytest.fixture
def frames(
    patient_frame: pd.DataFrame,
    diagnosis_frame: pd.DataFrame,
    lab_frame: pd.DataFrame,
    treatment_frame: pd.DataFrame,
    followup_frame: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    return {
        "patient": patient_frame,
        "diagnosis": diagnosis_frame,
        "lab": lab_frame,
        "treatment": treatment_frame,
        "followup": followup_frame,
    }


EXPECTED_COUNTS = {
    "patient": {"Patient": 2, "Observation": 2},
    "diagnosis": {"Condition": 3, "Observation": 5 + 5 + 1},
    "lab": {"Observation": 3},
    "treatment": {"Procedure": 2, "MedicationAdministration": 1},
    "followup": {"Encounter": 2, "Observation": 2},
}


@pytest.mark.parametrize("table", TABLES)
def test_every_resource_validates_with_r4b(frames: dict, table: str) -> None:
    result = map_table(table, frames[table], "h1")
    assert result.errors == []
    assert {k: len(v) for k, v in result.resources.items()} == EXPECTED_COUNTS[table]
    for resource_type, resources in result.resources.items():
        model = get_fhir_model_class(resource_type)
        for resource in resources:
            parsed = model.model_validate(resource)
            assert parsed.id == resource["id"]
            assert resource["meta"]["source"].startswith("urn:walnut:h1:b20240301:rh-")


@pytest.mark.parametrize("table", TABLES)
def test_ids_are_stable_and_unique(frames: dict, table: str) -> None:
    first = map_table(table, frames[table], "h1").resources
    second = map_table(table, frames[table].copy(), "h1").resources
    ids = [r["id"] for rs in first.values() for r in rs]
    assert ids == [r["id"] for rs in second.values() for r in rs]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("table", "column", "value", "reason"),
    [
        ("patient", "patient_key", None, "Patient.identifier: patient_key missing"),
        ("lab", "value", float("nan"), "Observation.valueQuantity.value: value missing"),
        ("lab", "collected_at", "not a time", "lab: column collected_at unparseable"),
        ("diagnosis", "ecog", 7, "Observation(ECOG).valueInteger: ecog outside 0-5"),
        ("treatment", "category", "radiation", "treatment: category not procedure or medication"),
        (
            "followup",
            "vital_status",
            "lost",
            "Observation(75186-7).valueCodeableConcept: vital_status not in value set",
        ),
    ],
)
def test_bad_row_is_an_error_without_resources(
    frames: dict, table: str, column: str, value: object, reason: str
) -> None:
    frame = frames[table].copy()
    frame[column] = frame[column].astype(object)
    frame.at[0, column] = value
    result = map_table(table, frame, "h1")
    assert result.errors == [(frame.loc[0, "_row_hash"], reason)]
    sources = {r["meta"]["source"] for rs in result.resources.values() for r in rs}
    assert not any(source.endswith(":" + frame.loc[0, "_row_hash"]) for source in sources)


def test_validation_failure_names_element_not_value(lab_frame: pd.DataFrame) -> None:
    frame = lab_frame.copy()
    frame.loc[0, "local_code"] = "AFP  01"  # FHIR code forbids a double space
    result = map_table("lab", frame, "h1")
    ((row_hash, reason),) = result.errors
    assert row_hash == "rh-l1"
    assert reason.startswith("Observation.code.coding[1].code: ")
    assert "AFP" not in reason
    assert len(result.resources["Observation"]) == 2


def test_blank_display_is_dropped(lab_frame: pd.DataFrame) -> None:
    frame = lab_frame.copy()
    frame.loc[1, "loinc_display"] = " "
    observation = map_table("lab", frame, "h1").resources["Observation"][1]
    assert observation["code"]["coding"][0] == {"system": "http://loinc.org", "code": "1751-7"}


def test_missing_lineage_is_reported_by_row_index(lab_frame: pd.DataFrame) -> None:
    frame = lab_frame.copy()
    frame.loc[2, "_row_hash"] = None
    result = map_table("lab", frame, "h1")
    assert result.errors == [("#2", "Observation.meta.source: _row_hash missing")]


def test_unknown_table_is_a_config_error(lab_frame: pd.DataFrame) -> None:
    with pytest.raises(ConfigError):
        map_table("imaging", lab_frame, "h1")


def test_write_ndjson_roundtrip(tmp_path: Path, lab_frame: pd.DataFrame) -> None:
    resources = map_table("lab", lab_frame, "h1").resources["Observation"]
    path = tmp_path / "fhir" / "Observation.ndjson"
    assert write_ndjson(resources, path) == 3
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == resources
    assert not list(tmp_path.rglob("*.partial"))
