"""Lab, staging, liver assessment and vital status Observations."""

from __future__ import annotations

import pandas as pd
import pytest

from transforms.fhir.condition import to_fhir_conditions
from transforms.fhir.ids import fhir_id
from transforms.fhir.mapper import map_table
from transforms.fhir.observation import (
    to_fhir_lab_observations,
    to_fhir_staging_observations,
    to_fhir_vital_status_observations,
)

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


def _codes(resource: dict) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in resource["code"]["coding"]]


@pytest.mark.parametrize(
    ("index", "codes", "value", "unit", "profile"),
    [
        (
            0,
            [("http://loinc.org", "1834-1"), ("urn:walnut:h1:lab", "AFP01")],
            412.3,
            "ng/mL",
            MCODE + "mcode-tumor-marker-test",
        ),
        (1, [("http://loinc.org", "1751-7"), ("urn:walnut:h1:lab", "ALB")], 38.0, "g/L", None),
        (2, [("urn:walnut:h1:lab", "XYZ9")], 1.5, "mmol/L", None),
    ],
)
def test_lab_observation(
    lab_frame: pd.DataFrame,
    index: int,
    codes: list[tuple[str, str]],
    value: float,
    unit: str,
    profile: str | None,
) -> None:
    observation = list(to_fhir_lab_observations(lab_frame, "h1"))[index]
    assert _codes(observation) == codes
    assert observation["valueQuantity"] == {
        "value": value,
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }
    assert observation["status"] == "final"
    assert observation["category"][0]["coding"][0]["code"] == "laboratory"
    assert observation["meta"].get("profile", [None]) == [profile]


def test_lab_effective_is_utc_and_id_uses_natural_key(lab_frame: pd.DataFrame) -> None:
    afp = next(to_fhir_lab_observations(lab_frame, "h1"))
    assert afp["effectiveDateTime"] == "2022-03-14T00:30:00Z"
    assert afp["id"] == fhir_id("Observation", "h1", "pk-a", "AFP01", "2022-03-14T00:30:00Z")
    assert afp["meta"]["source"] == "urn:walnut:h1:b20240301:rh-l1"


def test_naive_and_offset_timestamps_become_utc(lab_frame: pd.DataFrame) -> None:
    frame = lab_frame.copy()
    frame["collected_at"] = ["2022-03-14T08:30:00+08:00", "2022-03-14 00:30:00", None]
    first, second = (
        o["effectiveDateTime"] for o in map_table("lab", frame, "h1").resources["Observation"]
    )
    assert first == second == "2022-03-14T00:30:00Z"
    errors = map_table("lab", frame, "h1").errors
    assert errors == [("rh-l3", "Observation.effectiveDateTime: collected_at missing")]


def test_tnm_and_stage_group_from_lung_row(diagnosis_frame: pd.DataFrame) -> None:
    lung = diagnosis_frame.iloc[[1]]
    condition = next(to_fhir_conditions(lung, "h1"))
    observations = list(to_fhir_staging_observations(lung, "h1"))
    by_loinc = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(by_loinc) == {"21905-5", "21906-3", "21907-1", "21908-9", "89247-1"}
    expected = {"21905-5": "cT2a", "21906-3": "cN2", "21907-1": "cM0", "21908-9": "3A"}
    for loinc, code in expected.items():
        value = by_loinc[loinc]["valueCodeableConcept"]["coding"][0]
        assert value == {"system": "http://cancerstaging.org", "code": code}
        assert by_loinc[loinc]["method"]["coding"][0]["code"] == "897275008"
    assert by_loinc["21905-5"]["meta"]["profile"] == [MCODE + "mcode-tnm-primary-tumor-category"]
    assert by_loinc["21908-9"]["meta"]["profile"] == [MCODE + "mcode-tnm-stage-group"]
    members = {m["reference"] for m in by_loinc["21908-9"]["hasMember"]}
    assert members == {
        f"Observation/{by_loinc[c]['id']}" for c in ("21905-5", "21906-3", "21907-1")
    }
    assert by_loinc["89247-1"]["valueInteger"] == 0
    assert by_loinc["89247-1"]["meta"]["profile"] == [MCODE + "mcode-ecog-performance-status"]
    for observation in observations:
        assert observation["focus"] == [{"reference": f"Condition/{condition['id']}"}]
        assert observation["effectiveDateTime"] == "2021-07-01"
        assert observation["category"][0]["coding"][0]["code"] == "survey"


@pytest.mark.parametrize(
    ("code", "value"),
    [
        ("bclc-stage", "B"),
        ("cnlc-stage", "IIb"),
        ("child-pugh-class", "A"),
        ("ascites", "none"),
        ("hepatic-encephalopathy", "none"),
    ],
)
def test_liver_assessments(diagnosis_frame: pd.DataFrame, code: str, value: str) -> None:
    observations = list(to_fhir_staging_observations(diagnosis_frame.iloc[[0]], "h1"))
    (match,) = [o for o in observations if o["code"]["coding"][0]["code"] == code]
    assert match["code"]["coding"][0]["system"] == "urn:walnut:observation"
    assert match["valueCodeableConcept"]["coding"] == [
        {"system": f"urn:walnut:{code}", "code": value}
    ]


def test_liver_value_outside_value_set_is_row_error(diagnosis_frame: pd.DataFrame) -> None:
    frame = diagnosis_frame.copy()
    frame.loc[0, "bclc_stage"] = "E"
    result = map_table("diagnosis", frame, "h1")
    assert result.errors == [
        ("rh-d1", "Observation(bclc-stage).valueCodeableConcept: bclc_stage not in value set")
    ]
    assert {c["id"] for c in result.resources["Condition"]} == {
        fhir_id("Condition", "h1", "pk-b", "ZD-LUAD", "2021-07-01"),
        fhir_id("Condition", "h1", "pk-b", "ZD-HTN", "2020-01-09"),
    }


def test_vital_status_per_contact(followup_frame: pd.DataFrame) -> None:
    alive, dead = to_fhir_vital_status_observations(followup_frame, "h1")
    assert alive["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "75186-7",
        "display": "Vital status",
    }
    assert alive["valueCodeableConcept"]["coding"][0]["code"] == "438949009"
    assert alive["effectiveDateTime"] == "2023-06-01"
    assert "component" not in alive
    assert dead["valueCodeableConcept"]["coding"][0]["code"] == "419099009"
    assert dead["component"][0]["valueDateTime"] == "2023-11-02"
    assert dead["component"][0]["code"]["coding"][0]["code"] == "death-date"
