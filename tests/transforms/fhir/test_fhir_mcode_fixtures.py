"""Our output uses the same code systems and codes as the mCODE extraction framework fixtures."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from transforms.fhir.condition import to_fhir_conditions
from transforms.fhir.encounter import to_fhir_encounters
from transforms.fhir.medication import to_fhir_medication_administrations
from transforms.fhir.observation import to_fhir_staging_observations
from transforms.fhir.procedure import to_fhir_procedures


@pytest.fixture
def mcode(shared_data: Path):
    folder = shared_data / "mcode" / "mcode-extraction-framework" / "resources"

    def load(name: str) -> dict:
        return orjson.loads((folder / name).read_bytes())

    return load


def _systems(concept: dict) -> set[str]:
    return {c["system"] for c in concept["coding"]}


@pytest.mark.parametrize(
    ("fixture", "loinc"),
    [
        ("tumor-category-clinical-resource.json", "21905-5"),
        ("nodes-category-clinical-resource.json", "21906-3"),
        ("metastases-category-clinical-resource.json", "21907-1"),
        ("maximal-staging-resource.json", "21908-9"),
    ],
)
def test_staging_matches_fixture(
    mcode, diagnosis_frame: pd.DataFrame, fixture: str, loinc: str
) -> None:
    expected = mcode(fixture)
    ours = {
        o["code"]["coding"][0]["code"]: o
        for o in to_fhir_staging_observations(diagnosis_frame.iloc[[1]], "h1")
    }[loinc]
    assert ours["code"]["coding"][0]["system"] == expected["code"]["coding"][0]["system"]
    assert ours["code"]["coding"][0]["code"] == expected["code"]["coding"][0]["code"]
    assert _systems(ours["valueCodeableConcept"]) == _systems(expected["valueCodeableConcept"])
    assert ours["category"] == expected["category"]
    assert ours["status"] == expected["status"]
    assert "focus" in ours and "focus" in expected
    ours_value = ours["valueCodeableConcept"]["coding"][0]["code"]
    fixture_value = expected["valueCodeableConcept"]["coding"][0]["code"]
    # Same AJCC code shape: c-prefixed clinical categories (cT3), arabic stage groups (3C).
    if loinc == "21908-9":
        assert ours_value[0].isdigit() and fixture_value[0].isdigit()
    else:
        assert ours_value[:2] == fixture_value[:2]
    if "method" in expected:
        assert _systems(ours["method"]) == _systems(expected["method"])


def test_condition_matches_fixture(mcode, diagnosis_frame: pd.DataFrame) -> None:
    expected = mcode("maximal-condition-resource.json")
    ours = next(to_fhir_conditions(diagnosis_frame, "h1"))
    for element in ("clinicalStatus", "verificationStatus"):
        assert _systems(ours[element]) == _systems(expected[element])
    assert _systems(ours["category"][0]) == _systems(expected["category"][0])
    assert _systems(ours["bodySite"][0]) == _systems(expected["bodySite"][0])
    expected_urls = {e["url"] for e in expected["extension"]}
    assert {e["url"] for e in ours["extension"]} <= expected_urls


def test_medication_administration_matches_fixture(mcode, treatment_frame: pd.DataFrame) -> None:
    expected = mcode("maximal-medication-resource.json")
    (ours,) = to_fhir_medication_administrations(treatment_frame, "h1")
    assert ours["meta"]["profile"] == expected["meta"]["profile"]
    assert set(ours["effectivePeriod"]) == set(expected["effectivePeriod"])
    assert "medicationCodeableConcept" in ours and "reasonCode" in ours


def test_procedure_and_encounter_match_fixtures(
    mcode, treatment_frame: pd.DataFrame, followup_frame: pd.DataFrame
) -> None:
    procedure = mcode("maximal-procedure-resource.json")
    ours = next(to_fhir_procedures(treatment_frame, "h1"))
    assert ours["status"] == procedure["status"]
    assert ours["code"]["coding"][0]["system"] == procedure["code"]["coding"][0]["system"]
    encounter = mcode("maximal-encounter-resource.json")
    ours_encounter = next(to_fhir_encounters(followup_frame, "h1"))
    assert ours_encounter["class"]["system"] == encounter["class"]["system"]
    assert ours_encounter["class"]["code"] == encounter["class"]["code"]
