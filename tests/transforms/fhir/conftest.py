"""Inline canonical frames for the FHIR mapper tests (pseudonyms and codes only, no PHI)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest


def lineage(row_hash: str, source_row: int = 1) -> dict[str, Any]:
    return {
        "_hospital": "h1",
        "_batch_id": "b20240301",
        "_source_file": "export.csv",
        "_source_row": source_row,
        "_row_hash": row_hash,
    }


@pytest.fixture
def patient_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient_key": "pk-a",
                "person_key": "pp-a",
                "resident_id_valid": True,
                "sex": "male",
                "birth_date": pd.Timestamp("1958-04-12"),
                "death_date": pd.Timestamp("2023-11-02"),
                "hbsag": "positive",
                "hcv_ab": "negative",
                **lineage("rh-p1", 1),
            },
            {
                "patient_key": "pk-b",
                "person_key": None,
                "resident_id_valid": None,
                "sex": "female",
                "birth_date": pd.Timestamp("1971-09-30"),
                "death_date": pd.NaT,
                "hbsag": None,
                "hcv_ab": None,
                **lineage("rh-p2", 2),
            },
        ]
    )


@pytest.fixture
def diagnosis_frame() -> pd.DataFrame:
    liver = {
        "patient_key": "pk-a",
        "diagnosis_date": pd.Timestamp("2022-03-15"),
        "local_code": "ZD-HCC",
        "icd10_code": "C22.0",
        "icd10_display": "Liver cell carcinoma",
        "morphology_code": "8170/3",
        "bclc_stage": "B",
        "cnlc_stage": "IIb",
        "child_pugh_class": "A",
        "ascites": "none",
        "encephalopathy": "none",
        "tnm_t": None,
        "tnm_n": None,
        "tnm_m": None,
        "stage_group": None,
        "ecog": 1,
        **lineage("rh-d1", 1),
    }
    lung = {
        "patient_key": "pk-b",
        "diagnosis_date": pd.Timestamp("2021-07-01"),
        "local_code": "ZD-LUAD",
        "icd10_code": "C34.1",
        "icd10_display": "Malignant neoplasm of upper lobe, bronchus or lung",
        "morphology_code": "8140/3",
        "bclc_stage": None,
        "cnlc_stage": None,
        "child_pugh_class": None,
        "ascites": None,
        "encephalopathy": None,
        "tnm_t": "T2a",
        "tnm_n": "N2",
        "tnm_m": "M0",
        "stage_group": "IIIA",
        "ecog": 0,
        **lineage("rh-d2", 2),
    }
    other = {
        **{key: None for key in lung},
        "patient_key": "pk-b",
        "diagnosis_date": pd.Timestamp("2020-01-09"),
        "local_code": "ZD-HTN",
        "icd10_code": None,
        **lineage("rh-d3", 3),
    }
    return pd.DataFrame([liver, lung, other])


@pytest.fixture
def lab_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient_key": "pk-a",
                "collected_at": pd.Timestamp("2022-03-14 00:30:00", tz="UTC"),
                "collected_date": pd.Timestamp("2022-03-14"),
                "local_code": "AFP01",
                "loinc_code": "1834-1",
                "loinc_display": "Alpha-1-Fetoprotein [Mass/volume] in Serum or Plasma",
                "value": 412.3,
                "unit": "ng/mL",
                "source_value": 340.7,
                "source_unit": "IU/mL",
                **lineage("rh-l1", 1),
            },
            {
                "patient_key": "pk-a",
                "collected_at": pd.Timestamp("2022-03-14 00:30:00", tz="UTC"),
                "collected_date": pd.Timestamp("2022-03-14"),
                "local_code": "ALB",
                "loinc_code": "1751-7",
                "loinc_display": "Albumin [Mass/volume] in Serum or Plasma",
                "value": 38.0,
                "unit": "g/L",
                "source_value": 3.8,
                "source_unit": "g/dL",
                **lineage("rh-l2", 2),
            },
            {
                "patient_key": "pk-b",
                "collected_at": pd.Timestamp("2021-06-30 02:00:00", tz="UTC"),
                "collected_date": pd.Timestamp("2021-06-30"),
                "local_code": "XYZ9",
                "loinc_code": None,
                "loinc_display": None,
                "value": 1.5,
                "unit": "mmol/L",
                "source_value": 1.5,
                "source_unit": "mmol/L",
                **lineage("rh-l3", 3),
            },
        ]
    )


@pytest.fixture
def treatment_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient_key": "pk-b",
                "treatment_date": pd.Timestamp("2021-08-02"),
                "end_date": pd.NaT,
                "local_code": "SS-LOB",
                "category": "procedure",
                "code_system": "http://snomed.info/sct",
                "code": "359615001",
                "display": "Partial lobectomy of lung (procedure)",
                **lineage("rh-t1", 1),
            },
            {
                "patient_key": "pk-a",
                "treatment_date": pd.Timestamp("2022-04-01"),
                "end_date": pd.NaT,
                "local_code": "SS-TACE",
                "category": "procedure",
                "code_system": None,
                "code": None,
                "display": None,
                **lineage("rh-t2", 2),
            },
            {
                "patient_key": "pk-a",
                "treatment_date": pd.Timestamp("2022-05-10"),
                "end_date": pd.Timestamp("2022-09-30"),
                "local_code": "YP-SORA",
                "category": "medication",
                "code_system": "http://www.whocc.no/atc",
                "code": "L01EX02",
                "display": "sorafenib",
                **lineage("rh-t3", 3),
            },
        ]
    )


@pytest.fixture
def followup_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "patient_key": "pk-a",
                "contact_date": pd.Timestamp("2023-06-01"),
                "vital_status": "alive",
                "death_date": pd.NaT,
                **lineage("rh-f1", 1),
            },
            {
                "patient_key": "pk-a",
                "contact_date": pd.Timestamp("2023-11-20"),
                "vital_status": "dead",
                "death_date": pd.Timestamp("2023-11-02"),
                **lineage("rh-f2", 2),
            },
        ]
    )
