"""Synthea bulk FHIR export as a fourth hospital: sync -> warehouse, every row accounted for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.settings import load_settings
from pipeline.sync import sync_hospital
from tests.e2e_support import all_quarantine, gov_frame
from transforms.fhir.common import patient_id
from transforms.identity import load_pseudonym_key, pseudonymise
from warehouse.build import build_warehouse

pytestmark = pytest.mark.slow

HOSPITAL = "synthea_fhir"
LUNG_PATIENT = "129c6ac7-8d06-89de-ad63-0204a93e76c3"


@pytest.fixture(scope="module")
def run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("walnut_home")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    target = settings.source_dir(HOSPITAL)
    target.mkdir(parents=True)
    for path in (shared_data / "synthea" / "bulk-10-patients").glob("*.ndjson"):
        shutil.copy(path, target / path.name)
    first = sync_hospital(HOSPITAL, settings)
    build = build_warehouse(settings)
    second = sync_hospital(HOSPITAL, settings)
    return {"settings": settings, "first": first, "build": build, "second": second}


def _query(settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_sync_reconciles(run: dict) -> None:
    assert run["first"]["status"] == "success"
    assert run["second"]["status"] == "nothing new"
    recon = gov_frame(run["settings"], HOSPITAL, "reconciliation.parquet").set_index("table")
    assert recon["balanced"].all()
    assert recon.at["patient", "read"] == 13
    assert recon.at["patient", "loaded"] + recon.at["patient", "quarantined"] == 13
    assert recon.at["diagnosis", "read"] == 555
    assert recon.at["treatment", "read"] == 2056 + 1745


def test_quarantine_reasons_are_clear(run: dict) -> None:
    quarantine = all_quarantine(run["settings"], HOSPITAL)
    diagnosis = quarantine[quarantine["table"] == "diagnosis"]
    # social findings (employment, stress ...) have no ICD-10 target in codes/diagnosis.csv
    assert set(diagnosis["rule_id"]) == {"diagnosis.code_mapped"}
    assert diagnosis["reason"].str.contains("concept map").all()
    assert 400 < len(diagnosis) < 555


def test_lung_patient_has_c34_condition(run: dict) -> None:
    key = pseudonymise(
        pd.Series([LUNG_PATIENT]), load_pseudonym_key(allow_demo=True), "mrn:" + HOSPITAL
    )
    pid = patient_id(HOSPITAL, key.iloc[0])
    rows = _query(
        run["settings"],
        f"SELECT icd10_code, is_primary_cancer FROM core.condition WHERE patient_id = '{pid}'",
    )
    assert ("C34.9", True) in rows
    lung = _query(
        run["settings"],
        "SELECT DISTINCT patient_id FROM core.condition WHERE icd10_code LIKE 'C34%'",
    )
    assert lung == [(pid,)]


def test_every_subject_resolves_to_a_patient(run: dict) -> None:
    settings = run["settings"]
    assert _query(settings, "SELECT count(*), count(DISTINCT patient_id) FROM core.patient") == [
        (13, 13)
    ]
    for table in ("core.condition", "core.procedure", "core.medication"):
        (total, orphans) = _query(
            settings,
            f"SELECT count(*), count(*) FILTER (WHERE p.patient_id IS NULL) FROM {table} "
            "LEFT JOIN core.patient p USING (patient_id)",
        )[0]
        assert total > 0 and orphans == 0, table


def test_no_identifiers_in_staging_or_warehouse(run: dict, shared_data: Path) -> None:
    """Synthea ids are this hospital's MRNs: like names, phones and addresses they stay inside."""
    from tests.phi_scan import find_phi

    needles: set[str] = set()
    bulk = shared_data / "synthea" / "bulk-10-patients" / "Patient.000.ndjson"
    for line in bulk.read_text(encoding="utf-8").splitlines():
        patient = json.loads(line)
        needles |= {patient["id"], patient["name"][0]["family"], *patient["name"][0]["given"]}
        needles |= {t["value"] for t in patient.get("telecom", [])}
        needles |= {a["line"][0] for a in patient.get("address", []) if a.get("line")}
    assert len(needles) > 40
    assert find_phi(run["settings"].home, needles) == []
