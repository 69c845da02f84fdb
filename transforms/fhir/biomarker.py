"""Lung biomarker results as plain laboratory Observations (EGFR, ALK, ROS1, KRAS, PD-L1 TPS).

A plain Observation with the test's LOINC code, not mCODE's GenomicVariant: the exports give
a normalised finding per test, not HGVS variants. Values
(https://hl7.org/fhir/R4/observation.html):

- positive / negative: valueCodeableConcept with SNOMED CT qualifier values;
- a named variant (exon19del, L858R, T790M, G12C): valueCodeableConcept in the Walnut code
  system `urn:walnut:biomarker-result`, with the variant as text;
- PD-L1 TPS: valueQuantity in UCUM `%` (a `<1%` report arrives as 0.5, see
  transforms/biomarkers.py).
"""

from __future__ import annotations

from typing import Any

from transforms.fhir.common import (
    CATEGORY_LABORATORY,
    LOINC,
    UCUM,
    RowError,
    coding,
    local_system,
    natural_key,
    new_resource,
    patient_reference,
    require,
)
from transforms.fhir.ids import fhir_id
from transforms.fhir.observation import SNOMED_NEGATIVE, SNOMED_POSITIVE

WALNUT_BIOMARKER_RESULT = "urn:walnut:biomarker-result"
VARIANT_DISPLAY = {
    "exon19del": "EGFR exon 19 deletion",
    "L858R": "EGFR p.L858R",
    "T790M": "EGFR p.T790M",
    "G12C": "KRAS p.G12C",
}
PRESENCE = {"positive": SNOMED_POSITIVE, "negative": SNOMED_NEGATIVE}


def biomarker_observation_id(hospital: str, row: dict[str, Any]) -> str:
    """The source key, else hospital, patient, local test code, test date."""
    key = natural_key(row, row["patient_key"], row["local_code"], row["test_date"])
    return fhir_id("Observation", hospital, "biomarker", *key)


def build_biomarker_observation(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One laboratory Observation per biomarker row; RowError names element and column."""
    patient_key = require(row, "patient_key", "Observation.subject")
    local_code = require(row, "local_code", "Observation.code")
    test_date = require(row, "test_date", "Observation.effectiveDateTime")
    resource = new_resource("Observation", biomarker_observation_id(hospital, row), row, hospital)
    resource["status"] = "final"
    resource["category"] = [CATEGORY_LABORATORY]
    loinc = row["loinc_code"]
    codings = [coding(LOINC, loinc, row["loinc_display"])] if loinc else []
    codings.append(coding(local_system(hospital, "biomarker"), local_code))
    resource["code"] = {"coding": codings}
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["effectiveDateTime"] = test_date
    resource.update(_value(row))
    return resource


# https://hl7.org/fhir/R4/v2/0074/index.html (diagnostic service section)
SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
PD_L1_LOINC = "83053-9"
# LOINC document codes: 51969-4 Genetic analysis report, 11526-1 Pathology study.
REPORT_CODES = {
    "genetics": (
        coding(SERVICE_SECTION, "GE", "Genetics"),
        coding(LOINC, "51969-4", "Genetic analysis report"),
    ),
    "pathology": (
        coding(SERVICE_SECTION, "PAT", "Pathology (gross & histopath, not surgical)"),
        coding(LOINC, "11526-1", "Pathology study"),
    ),
}


def build_biomarker_report(
    row: dict[str, Any], hospital: str, observation: dict[str, Any]
) -> dict[str, Any]:
    """The pathology or molecular report the result belongs to
    (https://hl7.org/fhir/R4/diagnosticreport.html): one per biomarker test row, pointing at
    its Observation, so reports can be counted and joined like the other core tables."""
    key = natural_key(row, row["patient_key"], row["local_code"], row["test_date"])
    resource_id = fhir_id("DiagnosticReport", hospital, "biomarker", *key)
    resource = new_resource("DiagnosticReport", resource_id, row, hospital)
    kind = "pathology" if row["loinc_code"] == PD_L1_LOINC else "genetics"
    section, code = REPORT_CODES[kind]
    resource["status"] = "final"
    resource["category"] = [{"coding": [section]}]
    resource["code"] = {"coding": [code]}
    resource["subject"] = observation["subject"]
    resource["effectiveDateTime"] = observation["effectiveDateTime"]
    resource["result"] = [{"reference": f"Observation/{observation['id']}"}]
    return resource


def build_biomarker_observations(row: dict[str, Any], hospital: str) -> list[dict[str, Any]]:
    observation = build_biomarker_observation(row, hospital)
    return [observation, build_biomarker_report(row, hospital, observation)]


def _value(row: dict[str, Any]) -> dict[str, Any]:
    result, tps = row["result"], row["tps_percent"]
    if result is not None and tps is not None:
        raise RowError("Observation.value[x]: both result and tps_percent set")
    if tps is not None:
        if not 0 <= tps <= 100:
            raise RowError("Observation.valueQuantity: tps_percent outside 0-100")
        return {"valueQuantity": {"value": tps, "unit": "%", "system": UCUM, "code": "%"}}
    if result in PRESENCE:
        return {"valueCodeableConcept": {"coding": [PRESENCE[result]], "text": result}}
    if result in VARIANT_DISPLAY:
        concept = coding(WALNUT_BIOMARKER_RESULT, result, VARIANT_DISPLAY[result])
        return {"valueCodeableConcept": {"coding": [concept], "text": VARIANT_DISPLAY[result]}}
    if result is None:
        raise RowError("Observation.value[x]: result and tps_percent missing")
    raise RowError("Observation.valueCodeableConcept: result not in value set")
