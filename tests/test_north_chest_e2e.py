"""North chest end to end: Excel workbook -> sync -> warehouse, defect by defect, no PHI."""

from __future__ import annotations

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.settings import load_settings
from pipeline.sync import sync_hospital
from tests.e2e_support import (
    EXPECTED_RULE,
    all_quarantine,
    captured_logs,
    gov_frame,
    injected_defects,
)
from tests.phi_scan import find_phi, find_phi_in_text
from transforms.extract.excel import read_excel_sheet
from warehouse.build import build_warehouse

pytestmark = pytest.mark.slow

HOSPITAL = "north_chest"
WORKBOOK = "北方胸科_导出.xlsx"
TABLES = ("patient", "diagnosis", "biomarker", "lab", "treatment", "followup")
BIOMARKER_LOINC = {"21665-5", "100019-9", "102038-7", "21702-6", "83053-9"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from synthetic.generate import generate_all

    home = tmp_path_factory.mktemp("walnut_home")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=60, seed=7)
    with captured_logs() as lines:
        first = sync_hospital(HOSPITAL, settings)
        build = build_warehouse(settings)
        second = sync_hospital(HOSPITAL, settings)
    return {
        "settings": settings,
        "first": first,
        "second": second,
        "build": build,
        "logs": "\n".join(lines),
    }


def test_first_sync_reconciles_and_second_lands_nothing(run: dict) -> None:
    first = run["first"]
    assert first["status"] == "success"
    assert first["read"] == first["loaded"] + first["quarantined"] + first["dropped"]
    assert first["loaded"] > 1000 and first["resources"] > first["loaded"]
    assert run["second"]["batch_id"] is None and run["second"]["status"] == "nothing new"
    recon = gov_frame(run["settings"], HOSPITAL, "reconciliation.parquet")
    assert set(recon["table"]) == set(TABLES)
    assert recon["balanced"].all()
    assert (recon["read"] == recon["loaded"] + recon["quarantined"] + recon["dropped"]).all()


def test_lineage_names_workbook_and_sheet(run: dict) -> None:
    settings = run["settings"]
    files = {
        f
        for t in TABLES
        for p in (settings.staging / HOSPITAL / t).glob("*.parquet")
        for f in pq.read_table(p, columns=["_source_file"]).column(0).to_pylist()
    }
    assert files == {
        f"{WORKBOOK}#{sheet}" for sheet in ("患者", "诊断", "病理", "用药", "随访", "检验")
    }


def test_every_injected_defect_is_caught_by_its_rule(run: dict) -> None:
    settings = run["settings"]
    defects = injected_defects(settings, HOSPITAL)
    assert len(defects) >= 10
    assert set(defects["kind"]) >= set(EXPECTED_RULE) - {"unparseable_date", "undecodable_bytes"}
    quarantine = all_quarantine(settings, HOSPITAL)
    staged_rows = {
        (t, f, int(r))
        for t in TABLES
        for p in (settings.staging / HOSPITAL / t).glob("*.parquet")
        for f, r in pq.read_table(p, columns=["_source_file", "_source_row"])
        .to_pandas()
        .itertuples(index=False)
    }
    missed = []
    for d in defects.itertuples(index=False):
        expected = EXPECTED_RULE[d.kind].format(table=d.table)
        rows = quarantine[
            (quarantine["source_file"] == d.source_file)
            & (quarantine["source_row"] == int(d.source_row))
            & (quarantine["table"] == d.table)
        ]
        if expected == "dropped":
            caught = rows.empty and (d.table, d.source_file, int(d.source_row)) not in staged_rows
        else:
            caught = rows["rule_id"].str.startswith(expected).any()
        if not caught:
            missed.append((d.kind, d.table, d.source_file, d.source_row, sorted(rows["rule_id"])))
    assert not missed, missed


def test_duplicates_counted_as_dropped(run: dict) -> None:
    settings = run["settings"]
    defects = injected_defects(settings, HOSPITAL)
    recon = gov_frame(settings, HOSPITAL, "reconciliation.parquet").set_index("table")
    for table, n in defects[defects["kind"] == "duplicate_row"].groupby("table").size().items():
        assert recon.at[table, "dropped"] >= n


def test_biomarkers_become_observations(run: dict) -> None:
    settings = run["settings"]
    (ndjson,) = (settings.fhir / HOSPITAL).glob("*/Observation.ndjson")
    observations = [orjson.loads(line) for line in ndjson.read_bytes().splitlines()]
    markers = [
        o
        for o in observations
        if any(c["code"] in BIOMARKER_LOINC for c in o["code"]["coding"] if "loinc" in c["system"])
    ]
    assert {c["code"] for o in markers for c in o["code"]["coding"]} >= BIOMARKER_LOINC
    pdl1 = [o for o in markers if o["code"]["coding"][0]["code"] == "83053-9"]
    assert pdl1 and all(o["valueQuantity"]["unit"] == "%" for o in pdl1)
    assert all(0 <= o["valueQuantity"]["value"] <= 100 for o in pdl1)
    codes = {
        c["code"]
        for o in markers
        if "valueCodeableConcept" in o
        for c in o["valueCodeableConcept"]["coding"]
    }
    assert {"260385009", "exon19del", "L858R"} <= codes
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        counts = dict(
            con.execute(
                "SELECT code, count(*) FROM core.observation WHERE hospital = ? "
                "AND code IN ('21665-5', '100019-9', '102038-7', '21702-6', '83053-9') "
                "GROUP BY code",
                [HOSPITAL],
            ).fetchall()
        )
    finally:
        con.close()
    assert set(counts) == BIOMARKER_LOINC and min(counts.values()) > 10


def _planted(settings) -> set[str]:
    raw = read_excel_sheet(settings.sources / HOSPITAL / WORKBOOK, "患者", header_row=2).frame
    needles: set[str] = set()
    for column in ("姓名", "身份证号", "联系电话", "联系地址", "病案号"):
        needles |= set(raw[column])
    return {n for n in needles if n and len(n) >= 2}


def test_no_phi_outside_the_hospital_boundary(run: dict) -> None:
    settings = run["settings"]
    needles = _planted(settings)
    assert len(needles) > 200
    assert find_phi(settings.home, needles) == []
    assert find_phi_in_text(run["logs"], needles) == []
