"""Read FHIR NDJSON or Bundle files of one resource type into a raw frame of FHIRPath columns.

Hospitals that already speak FHIR (bulk export NDJSON, Synthea transaction Bundles) go through
the same columns.yaml/standardize path as CSV exports. Each resource is validated with its
`fhir.resources.R4B` model; an invalid one rejects its row with the element path (never the
value). Columns are simple FHIRPath-like paths of every primitive present (`id`,
`code.coding[0].code`, `subject.reference` ...), plus `<element>.id` beside each
`<element>.reference`: the referenced resource's id, so `Patient/x`, `urn:uuid:x` and
`http://server/Patient/x` all give `x` and can feed the `mrn` role. The narrative (`text`)
is skipped: it is display-only and repeats names in clear.

Inside a Bundle, `urn:uuid:` references to entries are rewritten to `Type/id` first;
conditional references (`Practitioner?identifier=...`) cannot be resolved here and are counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from transforms.extract.raw import RawTable, Rejected

log = logging.getLogger(__name__)

SKIPPED_ELEMENTS = frozenset({"text"})


@dataclass
class FhirIntake:
    """Validated resources of one type from one file, with (row, resource) pairs."""

    resource_type: str
    resources: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    types_seen: Counter = field(default_factory=Counter)
    resolved_references: int = 0
    unresolved_references: int = 0
    conditional_references: int = 0

    @property
    def rows_read(self) -> int:
        return len(self.resources) + len(self.rejected)


def reference_id(reference: str | None) -> str | None:
    """Id of the resource a reference points to; None for conditional or contained ones."""
    if not reference or "?" in reference or reference.startswith("#"):
        return None
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:") or None
    parts = [p for p in reference.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-1] if len(parts) >= 2 else None


def flatten_resource(resource: dict[str, Any]) -> dict[str, str]:
    """Primitive values of a resource by FHIRPath-like path, as strings; `<x>.id` beside refs."""
    out: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if not path and key in SKIPPED_ELEMENTS:
                    continue
                walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif value is not None:
            out[path] = _text(value)
            if path.endswith(".reference") and isinstance(value, str):
                target = reference_id(value)
                if target is not None:
                    out[path.removesuffix(".reference") + ".id"] = target

    walk(resource, "")
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error_path(exc: ValidationError) -> str:
    first = exc.errors()[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return f"{path or '(resource)'}: {first['type']}"


def _documents(path: Path) -> tuple[Iterator[tuple[int, Any]], bool]:
    """(row, parsed JSON or an Exception) per NDJSON line or Bundle entry; True for a Bundle."""
    data = path.read_bytes().lstrip(b"\xef\xbb\xbf")
    if path.suffix != ".ndjson":
        try:
            whole = orjson.loads(data)
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            return iter([(1, whole)]), whole.get("resourceType") == "Bundle"

    def lines() -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, exc

    return lines(), False


def _resolve(value: Any, targets: dict[str, str], intake: FhirIntake) -> Any:
    """Rewrite urn:uuid references to Type/id (in place) and count what stays unresolved."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                if item in targets:
                    value[key] = targets[item]
                    intake.resolved_references += 1
                elif "?" in item:
                    intake.conditional_references += 1
                elif item.startswith("urn:"):
                    intake.unresolved_references += 1
            else:
                _resolve(item, targets, intake)
    elif isinstance(value, list):
        for item in value:
            _resolve(item, targets, intake)
    return value


def _bundle_entries(bundle: dict[str, Any]) -> tuple[list[tuple[int, Any]], dict[str, str]]:
    entries = []
    targets: dict[str, str] = {}
    for number, entry in enumerate(bundle.get("entry") or [], start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        entries.append((number, resource))
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and full_url and resource.get("resourceType"):
            rid = resource.get("id") or reference_id(full_url)
            if rid:
                targets[full_url] = f"{resource['resourceType']}/{rid}"
    return entries, targets


def load_fhir_resources(path: Path, resource_type: str) -> FhirIntake:
    """Validated resources of `resource_type` in an NDJSON, Bundle or single-resource file.

    Row numbers are NDJSON line numbers or 1-based Bundle entry positions. Lines that are not
    JSON are rejected (they may have been of this type); other resource types are only counted.
    """
    model = get_fhir_model_class(resource_type)
    intake = FhirIntake(resource_type)
    documents, is_bundle = _documents(path)
    targets: dict[str, str] = {}
    items: Iterable[tuple[int, Any]] = documents
    if is_bundle:
        items, targets = _bundle_entries(next(documents)[1])
    for row, doc in items:
        if isinstance(doc, Exception):
            intake.rejected.append(Rejected(row, "extract.fhir_json", "line is not valid JSON"))
            continue
        rtype = doc.get("resourceType") if isinstance(doc, dict) else None
        if rtype is None:
            intake.rejected.append(
                Rejected(row, "extract.fhir_json", "not a FHIR resource (no resourceType)")
            )
            continue
        intake.types_seen[rtype] += 1
        if rtype != resource_type:
            continue
        if is_bundle:
            _resolve(doc, targets, intake)
        try:
            model.model_validate(doc)
        except ValidationError as exc:
            reason = f"invalid {resource_type} at {_error_path(exc)}"
            intake.rejected.append(Rejected(row, "extract.fhir_valid", reason))
            continue
        intake.resources.append((row, doc))
    if intake.conditional_references or intake.unresolved_references:
        log.warning(
            "%s: %d conditional and %d other unresolved reference(s) in %s resources",
            path.name,
            intake.conditional_references,
            intake.unresolved_references,
            resource_type,
        )
    return intake


def read_fhir_export(path: Path, resource_type: str, columns: Iterable[str] = ()) -> RawTable:
    """Raw frame of one file's `resource_type` resources; `columns` are always present."""
    intake = load_fhir_resources(path, resource_type)
    frame = pd.DataFrame([flatten_resource(r) for _, r in intake.resources], dtype=object)
    for column in ["id", *columns]:
        if column not in frame:
            frame[column] = pd.Series(None, index=frame.index, dtype=object)
    frame["_source_row"] = pd.Series(
        [row for row, _ in intake.resources], index=frame.index, dtype="int64"
    )
    log.info(
        "%s: %d %s resource(s), %d rejected",
        path.name,
        len(intake.resources),
        resource_type,
        len(intake.rejected),
    )
    return RawTable(frame, "utf-8", intake.rows_read, intake.rejected)
