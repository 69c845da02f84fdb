"""Tiny canonical staging frames for expectation tests: one known-good row per table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from transforms.canonical import columns_of

RUN_DATE = dt.date(2025, 6, 30)
NEXT_DAY = RUN_DATE + dt.timedelta(days=1)

GOOD_ROWS: dict[str, dict[str, Any]] = {
    "patient": {
        "patient_key": "pk-1",
        "person_key": "ps-1",
        "resident_id_valid": True,
        "sex": "female",
        "birth_date": dt.date(1960, 3, 1),
        "death_date": None,
        "hbsag": "positive",
        "hcv_ab": "negative",
    },
    "diagnosis": {
        "patient_key": "pk-1",
        "diagnosis_date": dt.date(2023, 5, 2),
        "local_code": "D001",
        "icd10_code": "C22.0",
        "icd10_display": "Liver cell carcinoma",
        "morphology_code": "8170/3",
        "bclc_stage": "B",
        "cnlc_stage": "IIa",
        "child_pugh_class": "A",
        "ascites": "none",
        "encephalopathy": "none",
        "tnm_t": "T2",
        "tnm_n": "N0",
        "tnm_m": "M0",
        "stage_group": "II",
        "ecog": 1,
    },
    "lab": {
        "patient_key": "pk-1",
        "collected_at": pd.Timestamp("2024-01-02 01:30", tz="UTC"),
        "collected_date": dt.date(2024, 1, 2),
        "local_code": "AFP",
        "loinc_code": "1834-1",
        "loinc_display": "Alpha-1-Fetoprotein",
        "value": 12.5,
        "unit": "ng/mL",
        "source_value": 10.3,
        "source_unit": "IU/mL",
    },
    "treatment": {
        "patient_key": "pk-1",
        "treatment_date": dt.date(2023, 6, 1),
        "end_date": dt.date(2023, 9, 1),
        "local_code": "T01",
        "category": "medication",
        "code_system": "http://www.whocc.no/atc",
        "code": "L01EX08",
        "display": "lenvatinib",
    },
    "biomarker": {
        "patient_key": "pk-1",
        "test_date": dt.date(2023, 4, 20),
        "local_code": "EGFR",
        "loinc_code": "21665-5",
        "loinc_display": "EGFR gene mutations",
        "result": "L858R",
        "tps_percent": None,
    },
    "followup": {
        "patient_key": "pk-1",
        "contact_date": dt.date(2024, 2, 1),
        "vital_status": "alive",
        "death_date": None,
    },
}

_PANDAS_DTYPES = {"string": "str", "float": "float64", "int": "Int64", "bool": "boolean"}


def make_row(table: str, row_hash: str, overrides: dict[str, Any] | None = None) -> dict:
    """The table's good row with lineage columns, then `overrides` applied."""
    row = {
        **GOOD_ROWS[table],
        "_unparsed": None,
        "_hospital": "demo",
        "_batch_id": "b-1",
        "_source_file": "export.csv",
        "_source_key": None,
        "_source_row": 1,
        "_row_hash": row_hash,
    }
    row.update(overrides or {})
    return row


def make_frame(table: str, rows: list[dict], style: str = "numpy") -> pd.DataFrame:
    """Canonical frame in one of the two shapes staging may hand over.

    numpy: str dtype strings and datetime64[ms] dates; python: object strings and date objects.
    """
    data: dict[str, Any] = {}
    for column in columns_of(table):
        values = [row.get(column.name) for row in rows]
        if column.dtype == "date":
            data[column.name] = (
                pd.Series(values, dtype=object)
                if style == "python"
                else pd.Series(pd.to_datetime(pd.Series(values, dtype=object))).astype(
                    "datetime64[ms]"
                )
            )
        elif column.dtype == "timestamp":
            data[column.name] = pd.Series(pd.to_datetime(values, utc=True)).astype(
                "datetime64[us, UTC]"
            )
        elif column.dtype == "string" and style == "python":
            data[column.name] = pd.Series(values, dtype=object)
        else:
            data[column.name] = pd.Series(values, dtype=_PANDAS_DTYPES[column.dtype])
    return pd.DataFrame(data)
