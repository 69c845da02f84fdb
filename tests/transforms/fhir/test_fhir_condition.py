"""Diagnosis rows -> Condition (mCODE PrimaryCancerCondition for C22/C34)."""

from __future__ import annotations

import pandas as pd
import pytest

from transforms.fhir.condition import to_fhir_conditions
from transforms.fhir.ids import fhir_id

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


@pytest.mark.parametrize(
    ("index", "icd10", "body_site", "morphology", "profiled"),
    [
        (0, "C22.0", "10200004", "8170/3", True),
        (1, "C34.1", "39607008", "8140/3", True),
        (2, None, None, None, False),
    ],
)
def test_condition_coding(
    diagnosis_frame: pd.DataFrame,
    index: int,
    icd10: str | None,
    body_site: str | None,
    morphology: str | None,
    profiled: bool,
) -> None:
    condition = list(to_fhir_conditions(diagnosis_frame, "h1"))[index]
    codings = condition["code"]["coding"]
    local = codings[-1]
    assert local["system"] == "urn:walnut:h1:diagnosis"
    assert local["code"] == diagnosis_frame.loc[index, "local_code"]
    if icd10:
        assert codings[0]["system"] == "http://hl7.org/fhir/sid/icd-10"
        assert codings[0]["code"] == icd10
    else:
        assert len(codings) == 1
    if body_site:
        assert condition["bodySite"][0]["coding"][0] == {
            "system": "http://snomed.info/sct",
            "code": body_site,
            "display": condition["bodySite"][0]["coding"][0]["display"],
        }
    else:
        assert "bodySite" not in condition
    if morphology:
        (extension,) = condition["extension"]
        assert extension["url"] == MCODE + "mcode-histology-morphology-behavior"
        assert extension["valueCodeableConcept"]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/icd-o-3",
            "code": morphology,
        }
    else:
        assert "extension" not in condition
    profiles = condition["meta"].get("profile", [])
    assert profiles == ([MCODE + "mcode-primary-cancer-condition"] if profiled else [])


def test_condition_dates_status_and_ids(diagnosis_frame: pd.DataFrame) -> None:
    liver = next(to_fhir_conditions(diagnosis_frame, "h1"))
    assert liver["onsetDateTime"] == "2022-03-15"
    assert liver["recordedDate"] == "2022-03-15"
    assert liver["clinicalStatus"]["coding"][0]["code"] == "active"
    assert liver["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert liver["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert liver["id"] == fhir_id("Condition", "h1", "pk-a", "ZD-HCC", "2022-03-15")
    assert liver["subject"]["reference"] == "Patient/" + fhir_id("Patient", "h1", "pk-a")
    assert liver["meta"]["source"] == "urn:walnut:h1:b20240301:rh-d1"
