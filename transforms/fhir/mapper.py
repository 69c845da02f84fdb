"""Map one canonical staging table to validated FHIR R4 resources, and write them as NDJSON."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from transforms.errors import ConfigError
from transforms.fhir.biomarker import build_biomarker_observations
from transforms.fhir.common import RowError, iter_rows
from transforms.fhir.condition import build_condition
from transforms.fhir.encounter import build_encounter
from transforms.fhir.medication import build_medication_administration
from transforms.fhir.observation import (
    build_hepatitis_observations,
    build_lab_observations,
    build_staging_observations,
    build_vital_status_observation,
)
from transforms.fhir.patient import build_patient
from transforms.fhir.procedure import build_procedure

log = logging.getLogger(__name__)

Builder = Callable[[dict[str, Any], str], list[dict[str, Any]]]


@dataclass
class MappingResult:
    """Validated resources by resourceType, and (`_row_hash`, reason) for rows that failed.

    A failed row contributes no resources at all; reasons name resource type, element path
    and column, never a value.
    """

    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def resource_count(self) -> int:
        return sum(len(items) for items in self.resources.values())


def build_treatment(row: dict[str, Any], hospital: str) -> list[dict[str, Any]]:
    """Procedure or MedicationAdministration, by the row's category."""
    category = row["category"]
    if category == "procedure":
        return [build_procedure(row, hospital)]
    if category == "medication":
        return [build_medication_administration(row, hospital)]
    raise RowError("treatment: category not procedure or medication")


BUILDERS: dict[str, tuple[Builder, ...]] = {
    "patient": (lambda row, site: [build_patient(row, site)], build_hepatitis_observations),
    "diagnosis": (lambda row, site: [build_condition(row, site)], build_staging_observations),
    "lab": (build_lab_observations,),
    "biomarker": (build_biomarker_observations,),
    "treatment": (build_treatment,),
    "followup": (
        lambda row, site: [build_encounter(row, site)],
        lambda row, site: [build_vital_status_observation(row, site)],
    ),
}

_MODELS: dict[str, Any] = {}


def map_table(table: str, frame: pd.DataFrame, hospital: str) -> MappingResult:
    """All FHIR resources of one canonical table's frame, each validated with its R4B model.

    Grain: a row yields all its resources or, on any mapping or validation failure, one error
    keyed by its `_row_hash` (or `#<row index>` when the hash itself is missing).
    """
    builders = BUILDERS.get(table)
    if builders is None:
        raise ConfigError(
            f"no FHIR mapping for table {table!r}; expected one of {sorted(BUILDERS)}"
        )
    result = MappingResult()
    for index, (row, bad_column) in enumerate(iter_rows(frame, table)):
        row_key = row["_row_hash"] or f"#{index}"
        if bad_column:
            result.errors.append((row_key, f"{table}: column {bad_column} unparseable"))
            continue
        try:
            resources = [resource for build in builders for resource in build(row, hospital)]
            for resource in resources:
                validate_resource(resource)
        except RowError as exc:
            result.errors.append((row_key, str(exc)))
            continue
        for resource in resources:
            result.resources.setdefault(resource["resourceType"], []).append(resource)
    log.info(
        "mapped %s %s: %d rows, %d resources, %d errors",
        hospital,
        table,
        len(frame),
        result.resource_count,
        len(result.errors),
    )
    return result


def validate_resource(resource: dict[str, Any]) -> None:
    """Validate with the fhir.resources R4B model; RowError names the first failing element.

    Pydantic messages can quote the input, so only the location and error type are kept.
    """
    resource_type = resource["resourceType"]
    model = _MODELS.get(resource_type)
    if model is None:
        model = _MODELS[resource_type] = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        raise RowError(f"{resource_type}.{_element_path(first['loc'])}: {first['type']}") from None
    except (TypeError, ValueError) as exc:
        raise RowError(f"{resource_type}: invalid ({type(exc).__name__})") from None


def write_ndjson(resources: Iterable[dict[str, Any]], path: Path) -> int:
    """Write resources one JSON object per line; returns the count.

    Written to a sibling temp file and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    count = 0
    with partial.open("wb") as handle:
        for resource in resources:
            handle.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    os.replace(partial, path)
    log.info("wrote %d resources to %s", count, path.name)
    return count


def _element_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(resource)"
