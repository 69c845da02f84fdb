"""Shared pieces of the FHIR mappers: code systems, typed row iteration, references, lineage."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from transforms.canonical import columns_of
from transforms.fhir.ids import fhir_id

# Code systems, as canonical URIs from https://terminology.hl7.org/external_terminologies.html
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
# AJCC has no terminology.hl7.org canonical; mCODE aliases it as http://cancerstaging.org
# https://github.com/HL7/fhir-mCODE-ig/blob/master/input/fsh/AL_CodeSystems.fsh
AJCC = "http://cancerstaging.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
WALNUT_OBSERVATION = "urn:walnut:observation"

MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"

# https://hl7.org/fhir/R4/valueset-observation-category.html
CATEGORY_LABORATORY = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}
CATEGORY_SURVEY = {"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}


class RowError(ValueError):
    """A row cannot become valid FHIR; the message names resource, element and column only."""


def local_system(hospital: str, kind: str) -> str:
    """The hospital's own code system, e.g. urn:walnut:h1:lab, kept beside standard codes."""
    return f"urn:walnut:{hospital}:{kind}"


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    """A Coding dict; display is omitted when unknown."""
    if display:
        return {"system": system, "code": code, "display": display}
    return {"system": system, "code": code}


def patient_id(hospital: str, patient_key: str) -> str:
    """Patient id from the hospital and patient pseudonym: every mapper agrees on it."""
    return fhir_id("Patient", hospital, patient_key)


def natural_key(row: dict[str, Any], *parts: Any) -> tuple[Any, ...]:
    """What identifies the row's resource across reruns and late updates.

    A database row keeps its identity through edits by its primary key (`_source_key`), so an
    update of any column replaces the same resource. File rows have no such key: their natural
    key (patient, code, date ...) is used instead.
    """
    if row.get("_source_key") is not None:
        return ("source-key", row["_source_key"])
    return parts


def patient_reference(hospital: str, patient_key: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id(hospital, patient_key)}"}


def require(row: dict[str, Any], column: str, element: str) -> Any:
    """The row's value of a mandatory column; RowError naming the element if it is null."""
    value = row[column]
    if value is None:
        raise RowError(f"{element}: {column} missing")
    return value


def new_resource(
    resource_type: str,
    resource_id: str,
    row: dict[str, Any],
    hospital: str,
    profile: str | None = None,
) -> dict[str, Any]:
    """Resource skeleton with id and lineage meta.source (hospital, batch, row hash: no PHI)."""
    batch_id = require(row, "_batch_id", f"{resource_type}.meta.source")
    row_hash = require(row, "_row_hash", f"{resource_type}.meta.source")
    meta: dict[str, Any] = {
        "source": f"urn:walnut:{row['_hospital'] or hospital}:{batch_id}:{row_hash}"
    }
    if profile:
        meta["profile"] = [profile]
    return {"resourceType": resource_type, "id": resource_id, "meta": meta}


def iter_rows(frame: pd.DataFrame, table: str) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Rows of a canonical frame as plain dicts with FHIR-ready values, in frame order.

    Values are None when null, dates are `YYYY-MM-DD`, timestamps are UTC `...Z` strings,
    floats are finite. The second item names a column whose non-null value could not be
    converted (the row must become an error), else None. Missing columns read as null.
    """
    names: list[str] = []
    arrays: list[list[Any]] = []
    bad: dict[int, str] = {}
    for column in columns_of(table):
        names.append(column.name)
        if column.name not in frame.columns:
            arrays.append([None] * len(frame))
            continue
        values, failed = _convert(frame[column.name], column.dtype)
        arrays.append(values)
        for position in failed:
            bad.setdefault(position, column.name)
    for position, values in enumerate(zip(*arrays, strict=True)):
        yield dict(zip(names, values, strict=True)), bad.get(position)


def _convert(series: pd.Series, dtype: str) -> tuple[list[Any], list[int]]:
    if dtype == "date":
        return _to_strings(series, "%Y-%m-%d", utc=False)
    if dtype == "timestamp":
        return _to_strings(series, "%Y-%m-%dT%H:%M:%SZ", utc=True)
    raw = series.astype(object).tolist()
    if dtype == "float":
        return _to_numbers(raw, float)
    if dtype == "int":
        return _to_numbers(raw, _exact_int)
    if dtype == "bool":
        return [None if _is_null(v) else bool(v) for v in raw], []
    return [_to_text(v) for v in raw], []


def _to_text(value: Any) -> str | None:
    """Blank strings count as null: an empty code must not become an empty Coding."""
    if _is_null(value):
        return None
    text = str(value)
    return text if text.strip() else None


def _to_strings(series: pd.Series, fmt: str, utc: bool) -> tuple[list[Any], list[int]]:
    """Vectorised date/timestamp formatting; naive timestamps are taken as UTC (the contract)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series
    else:
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=utc)
    if utc:
        tz = getattr(parsed.dt, "tz", None)
        parsed = parsed.dt.tz_localize("UTC") if tz is None else parsed.dt.tz_convert("UTC")
    text = parsed.dt.strftime(fmt)
    failed = (series.notna() & parsed.isna()).to_numpy().nonzero()[0].tolist()
    return [None if _is_null(v) else v for v in text.astype(object).tolist()], failed


def _to_numbers(raw: list[Any], cast: Any) -> tuple[list[Any], list[int]]:
    values: list[Any] = []
    failed: list[int] = []
    for position, value in enumerate(raw):
        if _is_null(value):
            values.append(None)
            continue
        try:
            number = cast(value)
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is None or (isinstance(number, float) and not math.isfinite(number)):
            failed.append(position)
        values.append(number)
    return values, failed


def _exact_int(value: Any) -> int | None:
    number = float(value)
    return int(number) if number.is_integer() else None


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def iter_built(
    frame: pd.DataFrame,
    table: str,
    hospital: str,
    builder: Callable[[dict[str, Any], str], list[dict[str, Any]]],
) -> Iterator[dict[str, Any]]:
    """Unvalidated resources of every row, in order; RowError names the failing row index.

    `mapper.map_table` is the tolerant entry point: it validates and turns failures into errors.
    """
    for index, (row, bad_column) in enumerate(iter_rows(frame, table)):
        if bad_column:
            raise RowError(f"row {index}: column {bad_column} unparseable")
        try:
            resources = builder(row, hospital)
        except RowError as exc:
            raise RowError(f"row {index}: {exc}") from exc
        yield from resources
