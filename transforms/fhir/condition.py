"""Diagnosis rows to FHIR Condition, mCODE PrimaryCancerCondition for liver and lung cancer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import (
    ICD10,
    ICDO3,
    MCODE,
    SNOMED,
    coding,
    iter_built,
    local_system,
    natural_key,
    new_resource,
    patient_reference,
    require,
)
from transforms.fhir.ids import fhir_id

# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-primary-cancer-condition.html
PRIMARY_CANCER_PROFILE = MCODE + "mcode-primary-cancer-condition"
# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-histology-morphology-behavior.html
HISTOLOGY_EXTENSION = MCODE + "mcode-histology-morphology-behavior"

# ICD-10 category -> SNOMED CT body structure, from the mCODE CancerBodyLocationVS
# (https://hl7.org/fhir/us/mcode/ValueSet-mcode-cancer-body-location-vs.html)
BODY_SITES: dict[str, dict[str, str]] = {
    "C22": coding(SNOMED, "10200004", "Liver structure (body structure)"),
    "C34": coding(SNOMED, "39607008", "Lung structure (body structure)"),
}

# https://hl7.org/fhir/R4/valueset-condition-clinical.html and -ver-status.html: staging rows
# carry no resolution date, so a recorded cancer diagnosis is taken as active and confirmed.
CLINICAL_ACTIVE = {
    "coding": [
        coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")
    ]
}
VERIFICATION_CONFIRMED = {
    "coding": [
        coding(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        )
    ]
}
# https://hl7.org/fhir/R4/valueset-condition-category.html; mCODE examples file cancer
# diagnoses on the problem list (they persist beyond the encounter that recorded them).
CATEGORY_PROBLEM_LIST = {
    "coding": [
        coding(
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "problem-list-item",
            "Problem List Item",
        )
    ]
}


def condition_id(hospital: str, row: dict[str, Any]) -> str:
    """Condition id from the source key, else hospital, patient, local code, diagnosis date."""
    key = natural_key(row, row["patient_key"], row["local_code"], row["diagnosis_date"])
    return fhir_id("Condition", hospital, *key)


def build_condition(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One Condition per diagnosis row (https://hl7.org/fhir/R4/condition.html)."""
    patient_key = require(row, "patient_key", "Condition.subject")
    local_code = require(row, "local_code", "Condition.code")
    require(row, "diagnosis_date", "Condition.onsetDateTime")
    icd10 = row["icd10_code"]
    category = icd10[:3].upper() if icd10 else None
    body_site = BODY_SITES.get(category) if category else None
    profile = PRIMARY_CANCER_PROFILE if body_site else None
    resource = new_resource("Condition", condition_id(hospital, row), row, hospital, profile)
    if row["morphology_code"] is not None:
        # ICD-O-3 morphology/behaviour (e.g. 8170/3) is allowed by the extensible binding.
        resource["extension"] = [
            {
                "url": HISTOLOGY_EXTENSION,
                "valueCodeableConcept": {"coding": [coding(ICDO3, row["morphology_code"])]},
            }
        ]
    resource["clinicalStatus"] = CLINICAL_ACTIVE
    resource["verificationStatus"] = VERIFICATION_CONFIRMED
    resource["category"] = [CATEGORY_PROBLEM_LIST]
    codings = []
    if icd10:
        codings.append(coding(ICD10, icd10, row["icd10_display"]))
    codings.append(coding(local_system(hospital, "diagnosis"), local_code))
    resource["code"] = {"coding": codings}
    if body_site:
        resource["bodySite"] = [{"coding": [body_site]}]
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["onsetDateTime"] = row["diagnosis_date"]
    resource["recordedDate"] = row["diagnosis_date"]
    return resource


def to_fhir_conditions(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Condition dicts, one per diagnosis row, unvalidated (see `mapper.map_table`)."""
    return iter_built(frame, "diagnosis", hospital, lambda row, site: [build_condition(row, site)])
