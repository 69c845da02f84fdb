"""A deliberately naive sync, for the speed-up ratio: the same stages, written the slow way.

Staging is a row-by-row pandas `apply` (each row standardised alone), validation calls GX once
per expectation, and FHIR mapping builds an fhir.resources model per resource and dumps it with
`model_dump_json`. It runs on the first `NAIVE_ROWS` rows of every landed source of the small
scale; results are rows/s and resources/s, compared with the real pipeline's figures.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from typing import Any

import pandas as pd

from pipeline.settings import Settings

NAIVE_ROWS = 200


def run_naive(settings: Settings) -> dict[str, Any]:
    from benchmarks.steps import _batches

    staged: dict[str, list[pd.DataFrame]] = defaultdict(list)
    hospitals: dict[str, str] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    rows = 0
    for hospital, batch_id in _batches(settings).items():
        if batch_id is None:
            continue
        for table, frame in _stage_naively(settings, hospital, batch_id):
            staged[(hospital, table)].append(frame)
            hospitals[hospital] = batch_id
            rows += len(frame)
    seconds["stage"] = time.perf_counter() - started
    frames = {k: pd.concat(v, ignore_index=True) for k, v in staged.items()}
    started = time.perf_counter()
    for (_, table), frame in frames.items():
        _validate_naively(table, frame)
    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    resources = sum(
        _map_naively(table, frame, hospital) for (hospital, table), frame in frames.items()
    )
    seconds["fhir"] = time.perf_counter() - started
    return {
        "source_rows": rows,
        "resources": resources,
        "stage_seconds": round(seconds["stage"], 3),
        "validate_seconds": round(seconds["validate"], 3),
        "fhir_seconds": round(seconds["fhir"], 3),
    }


def _stage_naively(settings: Settings, hospital: str, batch_id: str):
    from pipeline.batch_files import BatchFiles
    from transforms.extract import read_landed
    from transforms.extract.landing import read_manifest
    from transforms.identity import load_pseudonym_key
    from transforms.mapping import load_site_mapping
    from transforms.standardize import standardize_table
    from transforms.units import load_unit_table

    mapping = load_site_mapping(settings.mappings / hospital)
    specs = {s.key: s for s in mapping.sources}
    key, units = load_pseudonym_key(allow_demo=True), load_unit_table()
    files = BatchFiles(settings, hospital, batch_id)
    for landed in read_manifest(files.landing):
        for source_key in landed.sources:
            spec = specs[source_key]
            for raw in read_landed(spec, files.landing / landed.name):
                sample = raw.frame.head(NAIVE_ROWS)
                if sample.empty:
                    continue

                def one_row(row: pd.Series, spec=spec, raw=raw) -> pd.DataFrame:
                    return standardize_table(
                        row.to_frame().T,
                        spec.table,
                        mapping,
                        key=key,
                        batch_id=batch_id,
                        source_file=raw.source_name or landed.name,
                        units=units,
                        source_key=spec.key,
                    ).frame

                parts = sample.apply(one_row, axis=1).tolist()
                yield spec.table, pd.concat(parts, ignore_index=True)


def _validate_naively(table: str, frame: pd.DataFrame) -> None:
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    from expectations.checks import load_suite
    from expectations.runner import (
        RESULT_FORMAT,
        _get_context,
        _prepare,
        gx_kwargs,
        run_parameters,
    )

    context = _get_context()
    source = context.data_sources.get("walnut")
    name = f"naive_{table}_{id(frame)}"
    batch = (
        source.add_dataframe_asset(name=name)
        .add_batch_definition_whole_dataframe(name="whole")
        .get_batch(batch_parameters={"dataframe": _prepare(table, frame)})
    )
    parameters = run_parameters(dt.date.today())
    for check in load_suite(table):
        config = ExpectationConfiguration(type=check.expectation, kwargs=gx_kwargs(check))
        batch.validate(
            config.to_domain_obj(), result_format=RESULT_FORMAT, expectation_parameters=parameters
        )


def _map_naively(table: str, frame: pd.DataFrame, hospital: str) -> int:
    from fhir.resources.R4B import get_fhir_model_class

    from transforms.fhir.common import RowError, iter_rows
    from transforms.fhir.mapper import BUILDERS

    lines: list[str] = []
    for row, bad in iter_rows(frame, table):
        if bad:
            continue
        for build in BUILDERS[table]:
            try:
                built = build(row, hospital)
            except RowError:
                continue
            for resource in built:
                model = get_fhir_model_class(resource["resourceType"])
                try:
                    lines.append(model.model_validate(resource).model_dump_json())
                except ValueError:
                    continue
    return len(lines)
