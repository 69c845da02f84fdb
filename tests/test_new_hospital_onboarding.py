"""A hospital the code has never seen, onboarded with mapping files only, syncs end to end.

"west_clinic" is invented here: pinyin headers, day-first dates declared in `formats:`, UTF-8
with a BOM, its own local codes and concept maps, AFP in IU/mL. No Python knows about it.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipeline.settings import load_settings
from pipeline.sync import sync_hospital
from synthetic.resident_id import make_resident_id
from transforms.identity import load_pseudonym_key, pseudonymise
from transforms.onboarding.check import check_mapping
from warehouse.build import build_warehouse

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HOSPITAL = "west_clinic"
PATIENTS = 120
UPDATED = "2026-11-29"

SOURCE_YAML = """\
hospital: west_clinic
name: West Clinic (fictional, made up by this test)
timezone: Asia/Shanghai
sources:
  - {table: patient, kind: csv, files: "bingren_*.csv", encoding: auto}
  - {table: diagnosis, kind: csv, files: "zhenduan_*.csv", encoding: auto}
  - {table: lab, kind: csv, files: "jianyan_*.csv", encoding: auto}
"""

COLUMNS_YAML = """\
patient:
  bingli_hao: mrn
  xing_ming: name
  shenfenzheng: resident_id
  xingbie: {to: sex, values: sex}
  chusheng_riqi: {to: birth_date, formats: ["%d/%m/%Y"]}
  dianhua: drop
diagnosis:
  bingli_hao: mrn
  zhenduan_riqi: {to: diagnosis_date, formats: ["%d/%m/%Y"]}
  zhenduan_dm: {to: local_code, codes: diagnosis}
  zhenduan_mc: drop
lab:
  bingli_hao: mrn
  jianyan_shijian: {to: collected_at, formats: ["%d/%m/%Y %H:%M"]}
  xiangmu: {to: local_code, codes: lab}
  jieguo: source_value
  danwei: source_unit
value_maps:
  sex: {M: male, F: female}
"""

DIAGNOSIS_CSV = f"""\
local_code,system,code,display,source_url,updated
WC-GAN-AI,http://hl7.org/fhir/sid/icd-10,C22.0,Liver cell carcinoma,https://icd.who.int/browse10/2019/en#/C22.0,{UPDATED}
WC-FEI-AI,http://hl7.org/fhir/sid/icd-10,C34.9,"Bronchus or lung, unspecified",https://icd.who.int/browse10/2019/en#/C34.9,{UPDATED}
"""

LAB_CSV = f"""\
local_code,system,code,display,source_url,updated
WC-AFP,http://loinc.org,1834-1,Alpha-1-Fetoprotein [Mass/volume] in Serum or Plasma,https://loinc.org/1834-1,{UPDATED}
WC-ALB,http://loinc.org,1751-7,Albumin [Mass/volume] in Serum or Plasma,https://loinc.org/1751-7,{UPDATED}
"""


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _write_exports(folder: Path) -> dict:
    """A few hundred rows; patient 1 carries planted values the test checks exactly."""
    rng = random.Random(11)
    folder.mkdir(parents=True)
    patients, diagnoses, labs = [], [], []
    for i in range(1, PATIENTS + 1):
        male = rng.random() < 0.6
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 40))
        if i == 1:
            male, birth = True, dt.date(1961, 3, 5)  # 05/03/1961 day-first: 5 March
        mrn = f"WC{i:05d}"
        patients.append(
            [
                mrn,
                f"Pat{i} Test",
                make_resident_id(rng, "510104", birth, male),
                "M" if male else "F",
                birth.strftime("%d/%m/%Y"),
                f"139{rng.randrange(10**8):08d}",
            ]
        )
        diagnosed = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(0, 500))
        if i == 1:
            diagnosed = dt.date(2024, 2, 13)
        code = "WC-GAN-AI" if i % 3 else "WC-FEI-AI"
        diagnoses.append([mrn, diagnosed.strftime("%d/%m/%Y"), code, "liver or lung"])
        for k in range(2):
            when = dt.datetime.combine(diagnosed, dt.time(8, 30)) + dt.timedelta(days=7 * k)
            afp = 100.0 if i == 1 and k == 0 else round(rng.uniform(2, 400), 1)
            labs.append([mrn, when.strftime("%d/%m/%Y %H:%M"), "WC-AFP", str(afp), "IU/mL"])
            labs.append([mrn, when.strftime("%d/%m/%Y %H:%M"), "WC-ALB", "3.8", "g/dL"])
    _write_csv(
        folder / "bingren_2024.csv",
        ["bingli_hao", "xing_ming", "shenfenzheng", "xingbie", "chusheng_riqi", "dianhua"],
        patients,
    )
    _write_csv(
        folder / "zhenduan_2024.csv",
        ["bingli_hao", "zhenduan_riqi", "zhenduan_dm", "zhenduan_mc"],
        diagnoses,
    )
    _write_csv(
        folder / "jianyan_2024.csv",
        ["bingli_hao", "jianyan_shijian", "xiangmu", "jieguo", "danwei"],
        labs,
    )
    return {"patients": len(patients), "diagnoses": len(diagnoses), "labs": len(labs)}


def _write_mapping(mappings: Path) -> None:
    shutil.copytree(ROOT / "mappings", mappings)
    folder = mappings / HOSPITAL
    (folder / "codes").mkdir(parents=True)
    (folder / "source.yaml").write_text(SOURCE_YAML, encoding="utf-8")
    (folder / "columns.yaml").write_text(COLUMNS_YAML, encoding="utf-8")
    (folder / "codes" / "diagnosis.csv").write_text(DIAGNOSIS_CSV, encoding="utf-8")
    (folder / "codes" / "lab.csv").write_text(LAB_CSV, encoding="utf-8")


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("west")
    settings = load_settings(
        {
            "WALNUT_HOME": str(root / "home"),
            "WALNUT_MAPPINGS": str(root / "mappings"),
            "WALNUT_DEMO": "1",
        }
    )
    _write_mapping(settings.mappings)
    written = _write_exports(settings.source_dir(HOSPITAL))
    check = check_mapping(settings.mappings / HOSPITAL, settings.source_dir(HOSPITAL))
    run = sync_hospital(HOSPITAL, settings)
    build = build_warehouse(settings)
    return {"settings": settings, "written": written, "check": check, "run": run, "build": build}


def test_check_mapping_passes(onboarded: dict) -> None:
    check = onboarded["check"]
    assert check.errors == [] and check.warnings == []
    assert check.files_checked == 3
    assert check.unmapped == {}


def test_sync_reconciles_every_row(onboarded: dict) -> None:
    run, written = onboarded["run"], onboarded["written"]
    assert run["status"] == "success"
    assert run["read"] == sum(written.values())
    assert run["quarantined"] == 0 and run["dropped"] == 0
    assert run["loaded"] == run["read"]


def _patient_id(con: duckdb.DuckDBPyConnection, mrn: str) -> str:
    key = pseudonymise(pd.Series([mrn]), load_pseudonym_key(allow_demo=True), f"mrn:{HOSPITAL}")
    row = con.execute(
        "SELECT patient_id FROM core.patient WHERE patient_key = ?", [key.iloc[0]]
    ).fetchone()
    assert row is not None
    return row[0]


def test_values_land_in_core(onboarded: dict) -> None:
    con = duckdb.connect(str(onboarded["settings"].warehouse_db), read_only=True)
    try:
        patients = con.execute(
            "SELECT count(*) FROM core.patient WHERE hospital = ?", [HOSPITAL]
        ).fetchone()[0]
        assert patients == PATIENTS
        pid = _patient_id(con, "WC00001")
        gender, birth = con.execute(
            "SELECT gender, birth_date FROM core.patient WHERE patient_id = ?", [pid]
        ).fetchone()
        assert (gender, str(birth)) == ("male", "1961-03-05")  # 05/03/1961 read day-first
        code, onset = con.execute(
            "SELECT icd10_code, onset_date FROM core.condition WHERE patient_id = ?", [pid]
        ).fetchone()
        assert (code, str(onset)) == ("C22.0", "2024-02-13")  # WC-GAN-AI via codes/diagnosis
        afp = con.execute(
            "SELECT value_number, unit FROM core.observation WHERE patient_id = ? "
            "AND code = '1834-1' ORDER BY effective LIMIT 1",
            [pid],
        ).fetchone()
        assert afp[0] == pytest.approx(121.0) and afp[1] == "ng/mL"  # 100 IU/mL x 1.21
        albumin = con.execute(
            "SELECT DISTINCT value_number, unit FROM core.observation WHERE code = '1751-7'"
        ).fetchall()
        assert albumin == [(pytest.approx(38.0), "g/L")]  # 3.8 g/dL x 10
        lung = con.execute(
            "SELECT count(*) FROM core.condition WHERE icd10_code = 'C34.9'"
        ).fetchone()[0]
        assert lung == PATIENTS // 3
    finally:
        con.close()
