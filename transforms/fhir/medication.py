"""Drug exposure rows to FHIR MedicationAdministration (mCODE cancer-related)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import (
    MCODE,
    SNOMED,
    coding,
    iter_built,
    new_resource,
    patient_reference,
    require,
)
from transforms.fhir.ids import fhir_id
from transforms.fhir.procedure import treatment_code, treatment_key

# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-cancer-related-medication-administration.html
ADMINISTRATION_PROFILE = MCODE + "mcode-cancer-related-medication-administration"
# The profile's invariant mcode-reason-required needs reasonCode or reasonReference. Staging
# does not link a drug to a diagnosis row, so the generic cancer disorder (root of mCODE
# CancerDisorderVS) is stated: every treatment row in a Walnut cohort is cancer treatment.
CANCER_REASON = {"coding": [coding(SNOMED, "363346000", "Malignant neoplastic disease (disorder)")]}


def build_medication_administration(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One MedicationAdministration per drug exposure
    (https://hl7.org/fhir/R4/medicationadministration.html).

    medicationCodeableConcept holds the mapped ATC or RxNorm coding and the local code.
    Status is completed when an end date is known, else unknown (an export cannot tell an
    ongoing exposure from an unrecorded stop).
    """
    patient_key = require(row, "patient_key", "MedicationAdministration.subject")
    require(row, "local_code", "MedicationAdministration.medicationCodeableConcept")
    start = require(row, "treatment_date", "MedicationAdministration.effectivePeriod.start")
    resource_id = fhir_id("MedicationAdministration", hospital, *treatment_key(row))
    resource = new_resource(
        "MedicationAdministration", resource_id, row, hospital, ADMINISTRATION_PROFILE
    )
    resource["status"] = "completed" if row["end_date"] else "unknown"
    resource["medicationCodeableConcept"] = treatment_code(row, hospital)
    resource["subject"] = patient_reference(hospital, patient_key)
    period = {"start": start}
    if row["end_date"]:
        period["end"] = row["end_date"]
    resource["effectivePeriod"] = period
    resource["reasonCode"] = [CANCER_REASON]
    return resource


def to_fhir_medication_administrations(
    frame: pd.DataFrame, hospital: str
) -> Iterator[dict[str, Any]]:
    """MedicationAdministration dicts from treatment rows of category medication, unvalidated."""
    drugs = frame[frame["category"] == "medication"]
    return iter_built(
        drugs, "treatment", hospital, lambda row, site: [build_medication_administration(row, site)]
    )
