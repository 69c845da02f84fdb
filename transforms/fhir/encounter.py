"""Follow-up contact rows to FHIR Encounter (ambulatory, finished)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import (
    coding,
    iter_built,
    natural_key,
    new_resource,
    patient_reference,
    require,
)
from transforms.fhir.ids import fhir_id

# https://hl7.org/fhir/R4/v3/ActEncounterCode/vs.html (Encounter.class, R4 is a Coding)
AMBULATORY = coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory")


def build_encounter(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One finished ambulatory Encounter per follow-up contact
    (https://hl7.org/fhir/R4/encounter.html). Natural key: hospital, patient, contact date."""
    patient_key = require(row, "patient_key", "Encounter.subject")
    contact_date = require(row, "contact_date", "Encounter.period.start")
    resource_id = fhir_id("Encounter", hospital, *natural_key(row, patient_key, contact_date))
    resource = new_resource("Encounter", resource_id, row, hospital)
    resource["status"] = "finished"
    resource["class"] = AMBULATORY
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["period"] = {"start": contact_date}
    return resource


def to_fhir_encounters(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Encounter dicts, one per follow-up row, unvalidated (see `mapper.map_table`)."""
    return iter_built(frame, "followup", hospital, lambda row, site: [build_encounter(row, site)])
