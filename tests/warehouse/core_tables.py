"""Hand-built core.* tables in an in-memory DuckDB, shaped like the ViewDefinition output."""

from __future__ import annotations

from typing import Any

import duckdb

# Column types as the build produces them (warehouse/views/*.json + hospital, batch_id).
CORE_COLUMNS: dict[str, dict[str, str]] = {
    "patient": {
        "patient_id": "VARCHAR",
        "patient_key": "VARCHAR",
        "person_key": "VARCHAR",
        "gender": "VARCHAR",
        "birth_date": "VARCHAR",
        "deceased_date": "VARCHAR",
    },
    "condition": {
        "condition_id": "VARCHAR",
        "patient_id": "VARCHAR",
        "icd10_code": "VARCHAR",
        "icd10_display": "VARCHAR",
        "morphology_code": "VARCHAR",
        "body_site": "VARCHAR",
        "onset_date": "VARCHAR",
        "is_primary_cancer": "BOOLEAN",
    },
    "observation": {
        "observation_id": "VARCHAR",
        "patient_id": "VARCHAR",
        "category": "VARCHAR",
        "code_system": "VARCHAR",
        "code": "VARCHAR",
        "display": "VARCHAR",
        "value_number": "DOUBLE",
        "unit": "VARCHAR",
        "value_code": "VARCHAR",
        "value_display": "VARCHAR",
        "value_integer": "BIGINT",
        "effective": "VARCHAR",
        "focus_id": "VARCHAR",
    },
    "procedure": {
        "procedure_id": "VARCHAR",
        "patient_id": "VARCHAR",
        "code_system": "VARCHAR",
        "code": "VARCHAR",
        "display": "VARCHAR",
        "performed_date": "VARCHAR",
    },
    "medication": {
        "medication_id": "VARCHAR",
        "patient_id": "VARCHAR",
        "code_system": "VARCHAR",
        "code": "VARCHAR",
        "display": "VARCHAR",
        "start_date": "VARCHAR",
        "end_date": "VARCHAR",
    },
    "encounter": {
        "encounter_id": "VARCHAR",
        "patient_id": "VARCHAR",
        "class": "VARCHAR",
        "start_date": "VARCHAR",
    },
}
TRAILING = {"lineage": "VARCHAR", "hospital": "VARCHAR", "batch_id": "VARCHAR"}


def make_core(**tables: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """In-memory warehouse with every core table; rows are dicts, absent keys are null.

    Ids default to a row counter and hospital to `h1`, so tests state only what they test.
    """
    con = duckdb.connect()
    con.execute("CREATE SCHEMA core")
    for table, columns in CORE_COLUMNS.items():
        spec = columns | TRAILING
        con.execute(
            f"CREATE TABLE core.{table} (" + ", ".join(f'"{c}" {t}' for c, t in spec.items()) + ")"
        )
        rows = tables.get(table, [])
        id_column = next(iter(columns))
        for number, row in enumerate(rows, start=1):
            values = {id_column: f"{table}-{number}", "hospital": "h1", "batch_id": "b1"} | row
            con.execute(
                f"INSERT INTO core.{table} VALUES ({', '.join('?' for _ in spec)})",
                [values.get(c) for c in spec],
            )
    return con


def lab(patient: str, code: str, value: float, unit: str, when: str, **extra: Any) -> dict:
    """A laboratory observation row (effective as a UTC instant, as labs are)."""
    return {
        "patient_id": patient,
        "category": "laboratory",
        "code_system": "http://loinc.org",
        "code": code,
        "value_number": value,
        "unit": unit,
        "effective": f"{when}T02:00:00Z",
    } | extra


def finding(patient: str, code: str, value: str, when: str) -> dict:
    """A Walnut-coded liver assessment observation (BCLC, ascites ...)."""
    return {
        "patient_id": patient,
        "category": "survey",
        "code_system": "urn:walnut:observation",
        "code": code,
        "value_code": value,
        "effective": when,
    }
