"""Map one canonical staging table to validated FHIR R4 resources, and write them as NDJSON."""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

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
from transforms.fhir.validate import ElementCache
from transforms.processes import frozen_heap, processes

log = logging.getLogger(__name__)

Builder = Callable[[dict[str, Any], str], list[dict[str, Any]]]
# Every resource type the builders create.
RESOURCE_TYPES = (
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "MedicationAdministration",
    "Observation",
    "Patient",
    "Procedure",
)


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

# Per process: pool workers are forked, so each fills its own.
_ELEMENTS = ElementCache()
# Below this many rows a table is mapped in-process: forking costs more than it saves.
POOL_MIN_ROWS = 4000


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
    result = _map_rows(table, frame, hospital, 0)
    _log_mapped(hospital, table, len(frame), result.resource_count, len(result.errors))
    return result


@dataclass
class EncodedResult:
    """`map_table`'s output as NDJSON bytes per resourceType (what the batch files hold).

    Bytes cross process boundaries at memcpy speed; resource dicts would cost more to pickle
    and unpickle than to build.
    """

    ndjson: dict[str, list[bytes]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def resource_count(self) -> int:
        return sum(self.counts.values())

    def extend(self, other: EncodedResult) -> None:
        for rtype, parts in other.ndjson.items():
            self.ndjson.setdefault(rtype, []).extend(parts)
            self.counts[rtype] = self.counts.get(rtype, 0) + other.counts[rtype]
        self.errors.extend(other.errors)


def map_table_ndjson(
    table: str,
    frame: pd.DataFrame,
    hospital: str,
    workers: int | None = None,
    pool: ProcessPoolExecutor | None = None,
) -> EncodedResult:
    """`map_table` encoded as NDJSON, in row chunks over a process pool for large frames.

    Same resources, order and errors as `map_table` (chunks are merged in row order); every
    resource is still validated by its R4B model. `workers` (default `fhir_workers()`, as for
    `mapping_pool`) sizes the row chunks; `pool` (from `mapping_pool`) is used instead of
    forking a pool for this frame alone.
    """
    if table not in BUILDERS:
        raise ConfigError(
            f"no FHIR mapping for table {table!r}; expected one of {sorted(BUILDERS)}"
        )
    workers = workers or fhir_workers()
    if len(frame) < POOL_MIN_ROWS or (pool is None and workers <= 1):
        result = _map_rows_encoded(table, frame, hospital, 0)
    elif pool is not None:
        result = _map_on(pool, table, frame, hospital, workers)
    else:
        with mapping_pool(workers) as own:
            result = _map_on(own, table, frame, hospital, workers)
    _log_mapped(hospital, table, len(frame), result.resource_count, len(result.errors))
    return result


def fhir_workers() -> int:
    """Processes for mapping: WALNUT_FHIR_WORKERS, else the CPUs this process may use.

    Validation by the R4B models is pure Python (~3k resources/s per core), so the only way
    past one core's speed is more processes.
    """
    return processes("WALNUT_FHIR_WORKERS")


@contextmanager
def mapping_pool(workers: int | None = None) -> Iterator[ProcessPoolExecutor | None]:
    """Forked mapping workers kept for a whole batch (None when one process is configured).

    One pool per batch, not per chunk: each worker's element cache stays warm across chunks,
    so chunks can be small (the workers and the process holding a chunk's results stay
    small) without paying a fork and a cold cache for every one of them.
    """
    workers = workers or fhir_workers()
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("fork")
    with frozen_heap(), ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield pool


def _map_on(
    pool: ProcessPoolExecutor, table: str, frame: pd.DataFrame, hospital: str, workers: int
) -> EncodedResult:
    """Map row chunks on the pool and merge them in chunk order (same output as serial).

    Several chunks per worker keep both busy when one table's rows differ in cost.
    """
    size = max(POOL_MIN_ROWS // 2, -(-len(frame) // (workers * 4)))
    result = EncodedResult()
    futures = [
        pool.submit(_map_rows_encoded, table, frame.iloc[start : start + size], hospital, start)
        for start in range(0, len(frame), size)
    ]
    for future in futures:
        result.extend(future.result())
    return result


def _map_rows_encoded(table: str, frame: pd.DataFrame, hospital: str, offset: int) -> EncodedResult:
    mapped = _map_rows(table, frame, hospital, offset)
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    return EncodedResult(
        ndjson={
            t: [b"".join(dumps(r, option=newline) for r in rs)]
            for t, rs in mapped.resources.items()
        },
        counts={t: len(rs) for t, rs in mapped.resources.items()},
        errors=mapped.errors,
    )


def _log_mapped(hospital: str, table: str, rows: int, resources: int, errors: int) -> None:
    log.info(
        "mapped %s %s: %d rows, %d resources, %d errors", hospital, table, rows, resources, errors
    )


def _map_rows(table: str, frame: pd.DataFrame, hospital: str, offset: int) -> MappingResult:
    """Serial mapping of a frame whose first row is row `offset` of the whole table."""
    builders = BUILDERS[table]
    result = MappingResult()
    for index, (row, bad_column) in enumerate(iter_rows(frame, table), start=offset):
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
    return result


def validate_resource(resource: dict[str, Any]) -> None:
    """Validate with the fhir.resources R4B model; RowError names the first failing element.

    Identical child elements are validated once per process (see transforms/fhir/validate.py).
    """
    _ELEMENTS.validate(resource)


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
