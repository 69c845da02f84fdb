"""FHIR intake: NDJSON and Bundles flattened to FHIRPath columns, validated, references resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transforms.extract import read_landed
from transforms.extract.fhir_intake import (
    flatten_resource,
    load_fhir_resources,
    read_fhir_export,
    reference_id,
)
from transforms.mapping import FhirSource

CONDITION = {
    "resourceType": "Condition",
    "id": "c1",
    "text": {"status": "generated", "div": "<div>Jane Doe</div>"},
    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]},
    "subject": {"reference": "Patient/p1"},
    "onsetDateTime": "1984-10-22T20:35:22-04:00",
}
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1927-05-21"}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/p1", "p1"),
        ("urn:uuid:0b8d98a0-4c98", "0b8d98a0-4c98"),
        ("https://fhir.example.org/r4/Patient/p1/_history/3", "p1"),
        ("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999", None),
        ("#contained-1", None),
        ("p1", None),
        (None, None),
    ],
)
def test_reference_id(reference: str | None, expected: str | None) -> None:
    assert reference_id(reference) == expected


def test_flatten_resource_paths() -> None:
    flat = flatten_resource({**CONDITION, "meta": {"profile": ["a", "b"]}, "x": True})
    assert flat["code.coding[0].code"] == "254637007"
    assert flat["subject.reference"] == "Patient/p1"
    assert flat["subject.id"] == "p1"
    assert flat["meta.profile[1]"] == "b"
    assert flat["x"] == "true"
    assert not any(k.startswith("text") for k in flat)


def _ndjson(path: Path, *lines: object) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_ndjson_rows_rejects_and_other_types(tmp_path: Path) -> None:
    bad = {**CONDITION, "id": "c2", "subject": "Patient/secret-mrn-123"}
    path = _ndjson(tmp_path / "Condition.000.ndjson", CONDITION, "{not json", PATIENT, "", bad)
    raw = read_fhir_export(path, "Condition", columns=["abatementDateTime"])
    assert raw.rows_read == 3
    assert raw.frame["_source_row"].tolist() == [1]
    assert raw.frame["abatementDateTime"].isna().all()
    assert [(r.source_row, r.rule) for r in raw.rejected] == [
        (2, "extract.fhir_json"),
        (5, "extract.fhir_valid"),
    ]
    reason = raw.rejected[1].reason
    assert reason.startswith("invalid Condition at subject") and "secret" not in reason


def test_bundle_resolves_uuid_references(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p-1", "resource": {**PATIENT, "id": "p-1"}},
            {
                "fullUrl": "urn:uuid:c-1",
                "resource": {
                    **CONDITION,
                    "id": "c-1",
                    "subject": {"reference": "urn:uuid:p-1"},
                    "asserter": {"reference": "Practitioner?identifier=x|1"},
                },
            },
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    intake = load_fhir_resources(path, "Condition")
    assert dict(intake.types_seen) == {"Patient": 1, "Condition": 1}
    assert (intake.resolved_references, intake.conditional_references) == (1, 1)
    ((row, condition),) = intake.resources
    assert row == 2 and condition["subject"]["reference"] == "Patient/p-1"
    spec = FhirSource(table="diagnosis", kind="fhir", files="*.json", resource_type="Condition")
    (raw,) = read_landed(spec, path)
    assert raw.frame[["subject.id", "code.coding[0].code"]].values.tolist() == [
        ["p-1", "254637007"]
    ]


def test_unknown_resource_type_is_a_mapping_error() -> None:
    with pytest.raises(ValueError, match="unknown FHIR R4B resource type"):
        FhirSource(table="diagnosis", kind="fhir", files="*.ndjson", resource_type="Conditon")


def test_synthea_bulk_export(shared_data: Path) -> None:
    folder = shared_data / "synthea" / "bulk-10-patients"
    patients = read_fhir_export(folder / "Patient.000.ndjson", "Patient", ["deceasedDateTime"])
    conditions = read_fhir_export(folder / "Condition.000.ndjson", "Condition")
    assert patients.rows_read == len(patients.frame) == 13
    assert conditions.rows_read == len(conditions.frame) == 555
    assert patients.rejected == conditions.rejected == []
    assert patients.frame["deceasedDateTime"].notna().sum() == 3
    assert set(conditions.frame["subject.id"]) <= set(patients.frame["id"])
    lung = conditions.frame[
        conditions.frame["subject.id"] == "129c6ac7-8d06-89de-ad63-0204a93e76c3"
    ]
    assert {"254637007", "424132000", "162573006"} <= set(lung["code.coding[0].code"])


BUNDLES = {
    "Porsha375_Nienow652_87971181-9885-c79c-b296-5ca2fee37363.json": {
        "Observation": 149,
        "Immunization": 50,
        "Encounter": 33,
        "DiagnosticReport": 33,
        "DocumentReference": 33,
        "Claim": 33,
        "ExplanationOfBenefit": 33,
        "Patient": 1,
        "Condition": 1,
        "Provenance": 1,
    },
    "Sang383_Kuhic920_23dc3811-ae4e-fc12-fe61-b4a54b057624.json": {
        "Observation": 142,
        "Immunization": 44,
        "Encounter": 40,
        "DiagnosticReport": 40,
        "DocumentReference": 40,
        "Claim": 40,
        "ExplanationOfBenefit": 40,
        "Patient": 1,
        "Condition": 1,
        "Provenance": 1,
    },
}


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_synthea_bundles(shared_data: Path, name: str) -> None:
    path = shared_data / "synthea" / "bundles" / name
    patient_id = name.rsplit("_", 1)[1].removesuffix(".json")
    encounters = load_fhir_resources(path, "Encounter")
    assert dict(encounters.types_seen) == BUNDLES[name]
    assert len(encounters.resources) == BUNDLES[name]["Encounter"] and not encounters.rejected
    assert encounters.conditional_references > 0 and encounters.unresolved_references == 0
    observations = read_fhir_export(path, "Observation")
    assert len(observations.frame) == BUNDLES[name]["Observation"]
    assert set(observations.frame["subject.reference"]) == {f"Patient/{patient_id}"}
    assert observations.frame["encounter.reference"].str.startswith("Encounter/").all()
    assert set(observations.frame["encounter.id"]) <= {r["id"] for _, r in encounters.resources}
