"""Treatment rows -> Procedure and MedicationAdministration; follow-up -> Encounter."""

from __future__ import annotations

import pandas as pd

from transforms.fhir.encounter import to_fhir_encounters
from transforms.fhir.ids import fhir_id
from transforms.fhir.medication import to_fhir_medication_administrations
from transforms.fhir.procedure import to_fhir_procedures

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"


def test_resection_is_mcode_surgical_procedure(treatment_frame: pd.DataFrame) -> None:
    lobectomy, tace = to_fhir_procedures(treatment_frame, "h1")
    assert lobectomy["meta"]["profile"] == [MCODE + "mcode-cancer-related-surgical-procedure"]
    assert lobectomy["category"]["coding"][0]["code"] == "387713003"
    assert lobectomy["code"]["coding"] == [
        {
            "system": "http://snomed.info/sct",
            "code": "359615001",
            "display": "Partial lobectomy of lung (procedure)",
        },
        {"system": "urn:walnut:h1:treatment", "code": "SS-LOB"},
    ]
    assert lobectomy["status"] == "completed"
    assert lobectomy["performedDateTime"] == "2021-08-02"
    assert "profile" not in tace["meta"]
    assert tace["code"]["coding"] == [{"system": "urn:walnut:h1:treatment", "code": "SS-TACE"}]


def test_drug_exposure_is_medication_administration(treatment_frame: pd.DataFrame) -> None:
    (sorafenib,) = to_fhir_medication_administrations(treatment_frame, "h1")
    assert sorafenib["meta"]["profile"] == [
        MCODE + "mcode-cancer-related-medication-administration"
    ]
    assert sorafenib["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.whocc.no/atc",
        "code": "L01EX02",
        "display": "sorafenib",
    }
    assert sorafenib["medicationCodeableConcept"]["coding"][1]["system"] == (
        "urn:walnut:h1:treatment"
    )
    assert sorafenib["effectivePeriod"] == {"start": "2022-05-10", "end": "2022-09-30"}
    assert sorafenib["status"] == "completed"
    assert sorafenib["reasonCode"][0]["coding"][0]["code"] == "363346000"
    assert sorafenib["id"] == fhir_id(
        "MedicationAdministration", "h1", "pk-a", "YP-SORA", "2022-05-10"
    )


def test_followup_encounter(followup_frame: pd.DataFrame) -> None:
    first, second = to_fhir_encounters(followup_frame, "h1")
    assert first["status"] == "finished"
    assert first["class"]["code"] == "AMB"
    assert first["period"] == {"start": "2023-06-01"}
    assert first["id"] == fhir_id("Encounter", "h1", "pk-a", "2023-06-01")
    assert first["id"] != second["id"]
    assert second["meta"]["source"] == "urn:walnut:h1:b20240301:rh-f2"
