"""Biomarker rows -> validated laboratory Observations with LOINC code and typed values."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.transforms.fhir.conftest import lineage
from transforms.fhir.biomarker import WALNUT_BIOMARKER_RESULT
from transforms.fhir.mapper import map_table


def _row(local: str, loinc: str | None, result: str | None, tps: float | None, n: int) -> dict:
    return {
        "patient_key": "pk-a",
        "test_date": pd.Timestamp("2024-03-05"),
        "local_code": local,
        "loinc_code": loinc,
        "loinc_display": "display" if loinc else None,
        "result": result,
        "tps_percent": tps,
        **lineage(f"rh-b{n}", n),
    }


@pytest.fixture
def biomarker_frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _row("EGFR", "21665-5", "exon19del", None, 1),
            _row("ALK", "100019-9", "negative", None, 2),
            _row("PD-L1", "83053-9", None, 55.0, 3),
            _row("ROS1", None, "positive", None, 4),
        ]
    )


def test_each_row_becomes_one_laboratory_observation(biomarker_frame: pd.DataFrame) -> None:
    result = map_table("biomarker", biomarker_frame, "h1")
    assert result.errors == []
    observations = result.resources["Observation"]
    assert len(observations) == 4
    assert len({o["id"] for o in observations}) == 4
    for obs in observations:
        assert obs["status"] == "final"
        assert obs["category"][0]["coding"][0]["code"] == "laboratory"
        assert obs["effectiveDateTime"] == "2024-03-05"
        assert obs["meta"]["source"].startswith("urn:walnut:h1:b20240301:rh-b")
        assert obs["subject"]["reference"].startswith("Patient/")


def test_values_by_result_kind(biomarker_frame: pd.DataFrame) -> None:
    egfr, alk, pdl1, ros1 = map_table("biomarker", biomarker_frame, "h1").resources["Observation"]
    assert egfr["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "21665-5",
        "display": "display",
    }
    assert egfr["code"]["coding"][1] == {"system": "urn:walnut:h1:biomarker", "code": "EGFR"}
    assert egfr["valueCodeableConcept"]["coding"][0]["system"] == WALNUT_BIOMARKER_RESULT
    assert egfr["valueCodeableConcept"]["coding"][0]["code"] == "exon19del"
    assert alk["valueCodeableConcept"]["coding"][0]["code"] == "260385009"  # SNOMED negative
    assert pdl1["valueQuantity"] == {
        "value": 55.0,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    }
    assert "valueCodeableConcept" not in pdl1
    assert [c["system"] for c in ros1["code"]["coding"]] == ["urn:walnut:h1:biomarker"]
    assert ros1["valueCodeableConcept"]["coding"][0]["code"] == "10828004"  # SNOMED positive


def test_ids_are_stable_across_runs(biomarker_frame: pd.DataFrame) -> None:
    first = map_table("biomarker", biomarker_frame, "h1").resources["Observation"]
    again = map_table("biomarker", biomarker_frame, "h1").resources["Observation"]
    assert [o["id"] for o in first] == [o["id"] for o in again]


@pytest.mark.parametrize(
    ("result", "tps", "reason"),
    [
        (None, None, "result and tps_percent missing"),
        ("negative", 10.0, "both result and tps_percent set"),
        ("maybe", None, "result not in value set"),
        (None, 120.0, "tps_percent outside 0-100"),
    ],
)
def test_bad_rows_become_errors_without_values(result, tps, reason) -> None:
    frame = pd.DataFrame([_row("EGFR", "21665-5", result, tps, 9)])
    mapped = map_table("biomarker", frame, "h1")
    assert mapped.resources == {}
    assert len(mapped.errors) == 1
    row_hash, message = mapped.errors[0]
    assert row_hash == "rh-b9" and reason in message


def test_each_result_has_its_report(biomarker_frame: pd.DataFrame) -> None:
    resources = map_table("biomarker", biomarker_frame, "h1").resources
    observations, reports = resources["Observation"], resources["DiagnosticReport"]
    assert len(reports) == 4
    for obs, report in zip(observations, reports, strict=True):
        assert report["result"] == [{"reference": f"Observation/{obs['id']}"}]
        assert report["subject"] == obs["subject"]
        assert report["status"] == "final"
    egfr, _, pdl1, _ = reports
    assert egfr["code"]["coding"][0]["code"] == "51969-4"
    assert egfr["category"][0]["coding"][0]["code"] == "GE"
    assert pdl1["code"]["coding"][0]["code"] == "11526-1"
    assert pdl1["category"][0]["coding"][0]["code"] == "PAT"
