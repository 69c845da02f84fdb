"""Patient rows to FHIR Patient: pseudonymous identifiers, gender, birth and death dates only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import RowError, iter_built, new_resource, patient_id, require

# https://hl7.org/fhir/R4/valueset-administrative-gender.html
GENDERS = frozenset({"male", "female", "other", "unknown"})
PATIENT_KEY_SYSTEM = "urn:walnut:patient-key"
PERSON_KEY_SYSTEM = "urn:walnut:person-key"


def build_patient(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One Patient per patient row (https://hl7.org/fhir/R4/patient.html).

    Only pseudonyms and dates go out: names, telecom and address never exist in staging and
    are never emitted. The mCODE CancerPatient profile derives from US Core Patient, which
    requires a name, so no profile is claimed.
    """
    patient_key = require(row, "patient_key", "Patient.identifier")
    resource = new_resource("Patient", patient_id(hospital, patient_key), row, hospital)
    identifiers = [{"system": PATIENT_KEY_SYSTEM, "value": patient_key}]
    if row["person_key"] is not None:
        identifiers.append({"system": PERSON_KEY_SYSTEM, "value": row["person_key"]})
    resource["identifier"] = identifiers
    sex = row["sex"]
    if sex is not None:
        if sex not in GENDERS:
            raise RowError("Patient.gender: sex not in administrative-gender")
        resource["gender"] = sex
    if row["birth_date"] is not None:
        resource["birthDate"] = row["birth_date"]
    if row["death_date"] is not None:
        resource["deceasedDateTime"] = row["death_date"]
    return resource


def to_fhir_patients(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Patient dicts, one per patient row, unvalidated (see `mapper.map_table`)."""
    return iter_built(frame, "patient", hospital, lambda row, site: [build_patient(row, site)])
