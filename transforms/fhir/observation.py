"""Observations: lab results, staging and liver assessments, hepatitis status, vital status.

Liver assessments that LOINC and mCODE do not code are coded in the Walnut code system
`urn:walnut:observation` (Observation.code), with one value system per concept:

- `bclc-stage`: Barcelona Clinic Liver Cancer stage; values in `urn:walnut:bclc-stage`:
  0, A, B, C, D.
- `cnlc-stage`: China liver cancer stage; values in `urn:walnut:cnlc-stage`:
  Ia, Ib, IIa, IIb, IIIa, IIIb, IV.
- `child-pugh-class`: Child-Pugh class recorded by the clinician; values in
  `urn:walnut:child-pugh-class`: A, B, C.
- `ascites`: ascites grade; values in `urn:walnut:ascites`: none, mild, moderate-severe.
- `hepatic-encephalopathy`: encephalopathy grade; values in
  `urn:walnut:hepatic-encephalopathy`: none, grade1-2, grade3-4.
- `death-date`: date of death, a component (valueDateTime) of the vital status Observation.

No SNOMED CT observable with a stable code was found for these, so none is invented.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import (
    AJCC,
    CATEGORY_LABORATORY,
    CATEGORY_SURVEY,
    LOINC,
    MCODE,
    SNOMED,
    UCUM,
    WALNUT_OBSERVATION,
    RowError,
    coding,
    iter_built,
    local_system,
    natural_key,
    new_resource,
    patient_reference,
    require,
)
from transforms.fhir.condition import condition_id
from transforms.fhir.ids import fhir_id

# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-tumor-marker-test.html
TUMOR_MARKER_PROFILE = MCODE + "mcode-tumor-marker-test"
# LOINC codes in mCODE TumorMarkerTestVS: AFP, CEA, CA 19-9.
TUMOR_MARKER_LOINC = frozenset({"1834-1", "2039-6", "24108-3"})

# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-ecog-performance-status.html
ECOG_PROFILE = MCODE + "mcode-ecog-performance-status"
ECOG_CODE = {"coding": [coding(LOINC, "89247-1", "ECOG Performance Status score")]}

# AJCC 8th edition as Observation.method, from mCODE TNMStagingMethodVS
# (https://hl7.org/fhir/us/mcode/ValueSet-mcode-tnm-staging-method-vs.html)
AJCC_8TH_METHOD = {
    "coding": [
        coding(
            SNOMED,
            "897275008",
            "American Joint Commission on Cancer, Cancer Staging Manual, 8th edition "
            "neoplasm staging system (tumor staging)",
        )
    ]
}

# column -> (profile, LOINC clinical code, display, element suffix used in ids); profiles from
# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-tnm-primary-tumor-category.html etc.
TNM_CATEGORIES: dict[str, tuple[str, str, str]] = {
    "tnm_t": ("mcode-tnm-primary-tumor-category", "21905-5", "Primary tumor.clinical Cancer"),
    "tnm_n": ("mcode-tnm-regional-nodes-category", "21906-3", "Regional lymph nodes.clinical"),
    "tnm_m": ("mcode-tnm-distant-metastases-category", "21907-1", "Distant metastases.clinical"),
}
# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-tnm-stage-group.html
STAGE_GROUP = ("mcode-tnm-stage-group", "21908-9", "Stage group.clinical Cancer")

# column -> (Walnut code, display, allowed values)
LIVER_ASSESSMENTS: dict[str, tuple[str, str, frozenset[str]]] = {
    "bclc_stage": (
        "bclc-stage",
        "Barcelona Clinic Liver Cancer stage",
        frozenset({"0", "A", "B", "C", "D"}),
    ),
    "cnlc_stage": (
        "cnlc-stage",
        "China liver cancer stage",
        frozenset({"Ia", "Ib", "IIa", "IIb", "IIIa", "IIIb", "IV"}),
    ),
    "child_pugh_class": ("child-pugh-class", "Child-Pugh class", frozenset({"A", "B", "C"})),
    "ascites": ("ascites", "Ascites grade", frozenset({"none", "mild", "moderate-severe"})),
    "encephalopathy": (
        "hepatic-encephalopathy",
        "Hepatic encephalopathy grade",
        frozenset({"none", "grade1-2", "grade3-4"}),
    ),
}

# Qualifier values, https://browser.ihtsdotools.org (SNOMED CT international edition)
SNOMED_POSITIVE = coding(SNOMED, "10828004", "Positive (qualifier value)")
SNOMED_NEGATIVE = coding(SNOMED, "260385009", "Negative (qualifier value)")
PRESENCE = {"positive": SNOMED_POSITIVE, "negative": SNOMED_NEGATIVE}
# column -> (LOINC, display); https://loinc.org/5196-1 and https://loinc.org/16128-1
HEPATITIS: dict[str, tuple[str, str]] = {
    "hbsag": ("5196-1", "Hepatitis B virus surface Ag [Presence] in Serum"),
    "hcv_ab": ("16128-1", "Hepatitis C virus Ab [Presence] in Serum"),
}

# https://loinc.org/75186-7 "Vital status"; values SNOMED CT Alive/Dead (finding)
VITAL_STATUS_CODE = {"coding": [coding(LOINC, "75186-7", "Vital status")]}
VITAL_STATUS = {
    "alive": coding(SNOMED, "438949009", "Alive (finding)"),
    "dead": coding(SNOMED, "419099009", "Dead (finding)"),
}
DEATH_DATE_CODE = {"coding": [coding(WALNUT_OBSERVATION, "death-date", "Date of death")]}

_ROMAN = {"IV": "4", "III": "3", "II": "2", "I": "1", "0": "0"}
_STAGE_RE = re.compile(r"^(IV|III|II|I|0)(.*)$")


def build_lab_observation(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One laboratory Observation per lab row (https://hl7.org/fhir/R4/observation.html).

    Natural key: hospital, patient, local test code, specimen time (UTC).
    """
    patient_key = require(row, "patient_key", "Observation.subject")
    local_code = require(row, "local_code", "Observation.code")
    collected_at = require(row, "collected_at", "Observation.effectiveDateTime")
    value = require(row, "value", "Observation.valueQuantity.value")
    unit = require(row, "unit", "Observation.valueQuantity.unit")
    loinc = row["loinc_code"]
    profile = TUMOR_MARKER_PROFILE if loinc in TUMOR_MARKER_LOINC else None
    key = natural_key(row, patient_key, local_code, collected_at)
    resource_id = fhir_id("Observation", hospital, *key)
    resource = new_resource("Observation", resource_id, row, hospital, profile)
    resource["status"] = "final"
    resource["category"] = [CATEGORY_LABORATORY]
    codings = [coding(LOINC, loinc, row["loinc_display"])] if loinc else []
    codings.append(coding(local_system(hospital, "lab"), local_code))
    resource["code"] = {"coding": codings}
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["effectiveDateTime"] = collected_at
    resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return resource


def build_lab_observations(row: dict[str, Any], hospital: str) -> list[dict[str, Any]]:
    return [build_lab_observation(row, hospital)]


def build_staging_observations(row: dict[str, Any], hospital: str) -> list[dict[str, Any]]:
    """TNM, stage group, ECOG and liver assessments recorded on a diagnosis row.

    Each focuses on the row's Condition; ids extend the Condition's natural key with the
    assessment's code. Null assessments are simply absent.
    """
    patient_key = require(row, "patient_key", "Observation.subject")
    require(row, "local_code", "Observation.focus")
    effective = require(row, "diagnosis_date", "Observation.effectiveDateTime")
    condition = condition_id(hospital, row)
    context = _StagingContext(row, hospital, patient_key, condition, effective)
    resources: list[dict[str, Any]] = []
    for column, (profile, loinc, display) in TNM_CATEGORIES.items():
        if row[column] is not None:
            value = _clinical_tnm(row[column])
            resource = context.observation(loinc, MCODE + profile)
            resource["code"] = {"coding": [coding(LOINC, loinc, display)]}
            resource["valueCodeableConcept"] = {
                "coding": [coding(AJCC, value)],
                "text": row[column],
            }
            resource["method"] = AJCC_8TH_METHOD
            resources.append(resource)
    if row["stage_group"] is not None:
        profile, loinc, display = STAGE_GROUP
        resource = context.observation(loinc, MCODE + profile)
        resource["code"] = {"coding": [coding(LOINC, loinc, display)]}
        resource["valueCodeableConcept"] = {
            "coding": [coding(AJCC, _arabic_stage(row["stage_group"]))],
            "text": row["stage_group"],
        }
        resource["method"] = AJCC_8TH_METHOD
        if resources:
            resource["hasMember"] = [{"reference": f"Observation/{r['id']}"} for r in resources]
        resources.append(resource)
    if row["ecog"] is not None:
        if not 0 <= row["ecog"] <= 5:
            raise RowError("Observation(ECOG).valueInteger: ecog outside 0-5")
        resource = context.observation("89247-1", ECOG_PROFILE)
        resource["code"] = ECOG_CODE
        resource["valueInteger"] = row["ecog"]
        resources.append(resource)
    for column, (code, display, allowed) in LIVER_ASSESSMENTS.items():
        value = row[column]
        if value is None:
            continue
        if value not in allowed:
            raise RowError(f"Observation({code}).valueCodeableConcept: {column} not in value set")
        resource = context.observation(code, None)
        resource["code"] = {"coding": [coding(WALNUT_OBSERVATION, code, display)]}
        resource["valueCodeableConcept"] = {"coding": [coding(f"urn:walnut:{code}", value)]}
        resources.append(resource)
    return resources


def build_hepatitis_observations(row: dict[str, Any], hospital: str) -> list[dict[str, Any]]:
    """HBsAg and HCV antibody status from the patient master, one Observation each when known.

    The master carries no test date, so no effective[x] is claimed.
    """
    patient_key = require(row, "patient_key", "Observation.subject")
    resources = []
    for column, (loinc, display) in HEPATITIS.items():
        status = row[column]
        if status is None:
            continue
        if status not in PRESENCE:
            raise RowError(f"Observation({loinc}).valueCodeableConcept: {column} not in value set")
        resource_id = fhir_id("Observation", hospital, patient_key, loinc)
        resource = new_resource("Observation", resource_id, row, hospital)
        resource["status"] = "final"
        resource["category"] = [CATEGORY_LABORATORY]
        resource["code"] = {"coding": [coding(LOINC, loinc, display)]}
        resource["subject"] = patient_reference(hospital, patient_key)
        resource["valueCodeableConcept"] = {"coding": [PRESENCE[status]]}
        resources.append(resource)
    return resources


def build_vital_status_observation(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """Vital status at a follow-up contact; a death date rides along as a Walnut component.

    Natural key: hospital, patient, contact date. The warehouse derives last contact and death
    (survival censoring) from these.
    """
    patient_key = require(row, "patient_key", "Observation.subject")
    contact_date = require(row, "contact_date", "Observation.effectiveDateTime")
    status = require(row, "vital_status", "Observation.valueCodeableConcept")
    if status not in VITAL_STATUS:
        raise RowError("Observation(75186-7).valueCodeableConcept: vital_status not in value set")
    key = natural_key(row, patient_key, contact_date)
    resource_id = fhir_id("Observation", hospital, *key, "75186-7")
    resource = new_resource("Observation", resource_id, row, hospital)
    resource["status"] = "final"
    resource["code"] = VITAL_STATUS_CODE
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["effectiveDateTime"] = contact_date
    resource["valueCodeableConcept"] = {"coding": [VITAL_STATUS[status]]}
    if status == "dead" and row["death_date"] is not None:
        resource["component"] = [{"code": DEATH_DATE_CODE, "valueDateTime": row["death_date"]}]
    return resource


def to_fhir_lab_observations(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Lab Observation dicts, one per lab row, unvalidated (see `mapper.map_table`)."""
    return iter_built(frame, "lab", hospital, build_lab_observations)


def to_fhir_staging_observations(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Staging/assessment Observation dicts from diagnosis rows, unvalidated."""
    return iter_built(frame, "diagnosis", hospital, build_staging_observations)


def to_fhir_hepatitis_observations(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """HBsAg/HCV Ab Observation dicts from patient rows, unvalidated."""
    return iter_built(frame, "patient", hospital, build_hepatitis_observations)


def to_fhir_vital_status_observations(
    frame: pd.DataFrame, hospital: str
) -> Iterator[dict[str, Any]]:
    """Vital status Observation dicts, one per follow-up row, unvalidated."""
    return iter_built(
        frame, "followup", hospital, lambda row, site: [build_vital_status_observation(row, site)]
    )


class _StagingContext:
    """What every staging Observation of one diagnosis row shares."""

    def __init__(
        self, row: dict[str, Any], hospital: str, patient_key: str, condition: str, effective: str
    ) -> None:
        self.row = row
        self.hospital = hospital
        self.patient_key = patient_key
        self.condition = condition
        self.effective = effective

    def observation(self, code: str, profile: str | None) -> dict[str, Any]:
        resource_id = fhir_id("Observation", self.condition, code)
        resource = new_resource("Observation", resource_id, self.row, self.hospital, profile)
        resource["status"] = "final"
        resource["category"] = [CATEGORY_SURVEY]
        resource["subject"] = patient_reference(self.hospital, self.patient_key)
        resource["effectiveDateTime"] = self.effective
        resource["focus"] = [{"reference": f"Condition/{self.condition}"}]
        return resource


def _clinical_tnm(value: str) -> str:
    """AJCC clinical category code: T2a -> cT2a; prefixed values (cT2a, pT1, ycN0) kept."""
    return f"c{value}" if value[:1] in {"T", "N", "M"} else value


def _arabic_stage(value: str) -> str:
    """AJCC stage group code as mCODE examples write it: IIIB -> 3B, IA2 -> 1A2, IV -> 4."""
    match = _STAGE_RE.match(value.strip().upper())
    if not match:
        return value
    return _ROMAN[match.group(1)] + match.group(2)
