"""Procedure rows to FHIR Procedure; resections get mCODE CancerRelatedSurgicalProcedure."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from transforms.fhir.common import (
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

# https://hl7.org/fhir/us/mcode/StructureDefinition-mcode-cancer-related-surgical-procedure.html
SURGICAL_PROFILE = MCODE + "mcode-cancer-related-surgical-procedure"
# The profile fixes Procedure.category to SNOMED CT 387713003 "Surgical procedure".
SURGICAL_CATEGORY = {"coding": [coding(SNOMED, "387713003", "Surgical procedure (procedure)")]}
# Resections among mapped SNOMED CT codes: the mCODE example lobectomy, plus any code whose
# SNOMED display names an excision (hepatectomy, lobectomy, segmentectomy, resection).
RESECTION_CODES = frozenset({"359615001"})
RESECTION_WORDS = ("ectomy", "resection", "excision")


def is_resection(system: str | None, code: str | None, display: str | None) -> bool:
    """True when the mapped SNOMED CT code is a surgical resection (ablation, TACE are not)."""
    if system != SNOMED or not code:
        return False
    if code in RESECTION_CODES:
        return True
    text = (display or "").lower()
    return any(word in text for word in RESECTION_WORDS)


def treatment_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Key of a treatment event: the source key, else patient, local code, start date."""
    return natural_key(row, row["patient_key"], row["local_code"], row["treatment_date"])


def treatment_code(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """Standard coding when mapped, then always the hospital's local treatment code."""
    codings = []
    if row["code"] and row["code_system"]:
        codings.append(coding(row["code_system"], row["code"], row["display"]))
    codings.append(coding(local_system(hospital, "treatment"), row["local_code"]))
    return {"coding": codings}


def build_procedure(row: dict[str, Any], hospital: str) -> dict[str, Any]:
    """One completed Procedure per procedure row (https://hl7.org/fhir/R4/procedure.html)."""
    patient_key = require(row, "patient_key", "Procedure.subject")
    require(row, "local_code", "Procedure.code")
    performed = require(row, "treatment_date", "Procedure.performedDateTime")
    resection = is_resection(row["code_system"], row["code"], row["display"])
    resource_id = fhir_id("Procedure", hospital, *treatment_key(row))
    profile = SURGICAL_PROFILE if resection else None
    resource = new_resource("Procedure", resource_id, row, hospital, profile)
    resource["status"] = "completed"
    if resection:
        resource["category"] = SURGICAL_CATEGORY
    resource["code"] = treatment_code(row, hospital)
    resource["subject"] = patient_reference(hospital, patient_key)
    resource["performedDateTime"] = performed
    return resource


def to_fhir_procedures(frame: pd.DataFrame, hospital: str) -> Iterator[dict[str, Any]]:
    """Procedure dicts from treatment rows of category procedure, unvalidated."""
    procedures = frame[frame["category"] == "procedure"]
    return iter_built(
        procedures, "treatment", hospital, lambda row, site: [build_procedure(row, site)]
    )
