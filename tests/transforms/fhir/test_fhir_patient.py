"""Patient rows -> Patient and hepatitis status Observations."""

from __future__ import annotations

import datetime

import pandas as pd
import pyarrow as pa
import pytest

from transforms.fhir.ids import fhir_id
from transforms.fhir.mapper import map_table
from transforms.fhir.observation import to_fhir_hepatitis_observations
from transforms.fhir.patient import to_fhir_patients


def test_patient_fields(patient_frame: pd.DataFrame) -> None:
    first, second = to_fhir_patients(patient_frame, "h1")
    assert first["id"] == fhir_id("Patient", "h1", "pk-a")
    assert first["meta"] == {"source": "urn:walnut:h1:b20240301:rh-p1"}
    assert first["identifier"] == [
        {"system": "urn:walnut:patient-key", "value": "pk-a"},
        {"system": "urn:walnut:person-key", "value": "pp-a"},
    ]
    assert first["gender"] == "male"
    assert first["birthDate"] == "1958-04-12"
    assert first["deceasedDateTime"] == "2023-11-02"
    assert second["identifier"] == [{"system": "urn:walnut:patient-key", "value": "pk-b"}]
    assert "deceasedDateTime" not in second


def test_patient_has_no_phi_elements(patient_frame: pd.DataFrame) -> None:
    for patient in to_fhir_patients(patient_frame, "h1"):
        assert not {"name", "telecom", "address", "photo", "contact"} & patient.keys()
        assert set(patient) <= {
            "resourceType",
            "id",
            "meta",
            "identifier",
            "gender",
            "birthDate",
            "deceasedDateTime",
        }


def test_hepatitis_status_observations(patient_frame: pd.DataFrame) -> None:
    hbsag, hcv = to_fhir_hepatitis_observations(patient_frame, "h1")
    assert hbsag["code"]["coding"][0]["system"] == "http://loinc.org"
    assert hbsag["code"]["coding"][0]["code"] == "5196-1"
    assert hbsag["valueCodeableConcept"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "10828004",
        "display": "Positive (qualifier value)",
    }
    assert hcv["code"]["coding"][0]["code"] == "16128-1"
    assert hcv["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    assert hbsag["subject"] == {"reference": f"Patient/{fhir_id('Patient', 'h1', 'pk-a')}"}


def test_unknown_gender_is_an_error_not_an_exception(patient_frame: pd.DataFrame) -> None:
    frame = patient_frame.copy()
    frame.loc[1, "sex"] = "M"
    result = map_table("patient", frame, "h1")
    assert result.errors == [("rh-p2", "Patient.gender: sex not in administrative-gender")]
    assert [p["identifier"][0]["value"] for p in result.resources["Patient"]] == ["pk-a"]


@pytest.mark.parametrize(
    "birth_dates",
    [
        [datetime.date(1958, 4, 12), datetime.date(1971, 9, 30)],
        ["1958-04-12", "1971-09-30"],
        pd.Series(
            pa.array([datetime.date(1958, 4, 12), datetime.date(1971, 9, 30)]),
            dtype=pd.ArrowDtype(pa.date32()),
        ),
    ],
    ids=["date-objects", "iso-strings", "arrow-date32"],
)
def test_date_column_representations(patient_frame: pd.DataFrame, birth_dates: object) -> None:
    frame = patient_frame.copy()
    frame["birth_date"] = birth_dates
    assert [p["birthDate"] for p in to_fhir_patients(frame, "h1")] == ["1958-04-12", "1971-09-30"]
