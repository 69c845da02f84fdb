"""East liver end to end: synthetic exports -> sync -> warehouse, defect by defect, no PHI."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
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
from tests.phi_scan import find_phi, find_phi_in_text, planted_identifiers
from warehouse.build import build_warehouse
from warehouse.docs import write_data_dictionary
from warehouse.dq_report import write_dq_report
from warehouse.report import write_report

pytestmark = pytest.mark.slow

HOSPITAL = "east_liver"


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
        reports = [
            write_report(settings),
            write_dq_report(settings),
            write_data_dictionary(settings)["markdown"],
        ]
    return {
        "settings": settings,
        "reports": reports,
        "first": first,
        "second": second,
        "build": build,
        "logs": "\n".join(lines),
    }


def test_first_sync_reconciles_and_second_lands_nothing(run: dict) -> None:
    assert run["first"]["status"] == "success"
    assert (
        run["first"]["read"]
        == run["first"]["loaded"] + run["first"]["quarantined"] + run["first"]["dropped"]
    )
    assert run["first"]["loaded"] > 0 and run["first"]["resources"] > run["first"]["loaded"] / 2
    assert run["second"] == {"hospital": HOSPITAL, "batch_id": None, "status": "nothing new"}
    recon = gov_frame(run["settings"], HOSPITAL, "reconciliation.parquet")
    assert set(recon["table"]) == {"patient", "diagnosis", "lab", "treatment", "followup"}
    assert recon["balanced"].all()
    assert (recon["read"] == recon["loaded"] + recon["quarantined"] + recon["dropped"]).all()


def test_every_injected_defect_is_caught_by_its_rule(run: dict) -> None:
    settings = run["settings"]
    defects = injected_defects(settings, HOSPITAL)
    assert len(defects) >= 10
    assert set(defects["kind"]) >= set(EXPECTED_RULE) - {"unparseable_date"}
    quarantine = all_quarantine(settings, HOSPITAL)
    staged_rows = {
        (t, f, int(r))
        for t in ("patient", "diagnosis", "lab", "treatment", "followup")
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
    recon = gov_frame(settings, HOSPITAL, "reconciliation.parquet")
    for table, n in defects[defects["kind"] == "duplicate_row"].groupby("table").size().items():
        assert recon.set_index("table").at[table, "dropped"] >= n


def test_warehouse_has_core_and_gov_tables(run: dict) -> None:
    db = run["settings"].warehouse_db
    con = duckdb.connect(str(db), read_only=True)
    try:
        patients = con.execute(
            "SELECT count(*), count(DISTINCT patient_id) FROM core.patient"
        ).fetchone()
        assert patients[0] == patients[1] > 40
        labs = con.execute(
            "SELECT count(*) FROM core.observation WHERE code = '1834-1' AND unit = 'ng/mL'"
        ).fetchone()[0]
        assert labs > 0
        orphan = con.execute(
            "SELECT count(*) FROM core.condition c LEFT JOIN core.patient p USING (patient_id) "
            "WHERE p.patient_id IS NULL"
        ).fetchone()[0]
        assert orphan == 0
        for table in (
            "core.condition",
            "core.procedure",
            "gov.load_run",
            "gov.quarantine",
            "gov.dq_result",
            "gov.reconciliation",
        ):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        assert con.execute("SELECT DISTINCT hospital FROM core.patient").fetchall() == [(HOSPITAL,)]
    finally:
        con.close()


def _planted(settings) -> set[str]:
    return planted_identifiers(settings.sources, HOSPITAL)


def test_no_phi_outside_the_hospital_boundary(run: dict) -> None:
    settings = run["settings"]
    needles = _planted(settings)
    assert len(needles) > 100
    assert all(Path(p).is_file() for p in run["reports"])  # reports are part of the scan
    assert find_phi(settings.home, needles) == []
    assert find_phi_in_text(run["logs"], needles) == []


def test_phi_scan_catches_a_leak(run: dict, tmp_path: Path) -> None:
    """The scan itself works: a planted identifier let through on purpose is found."""
    needle = sorted(_planted(run["settings"]))[0]
    leak = tmp_path / "reports" / "leak.parquet"
    leak.parent.mkdir()
    pd.DataFrame({"x": [f"...{needle}..."]}).to_parquet(leak)
    assert find_phi(tmp_path, {needle}) == [("reports/leak.parquet", needle)]


def test_rebuild_is_identical(run: dict) -> None:
    db = run["settings"].warehouse_db

    def snapshot() -> dict:
        con = duckdb.connect(str(db), read_only=True)
        try:
            return {
                t: con.execute(f"SELECT * FROM core.{t} ORDER BY ALL").fetchall()
                for t in ("patient", "condition", "observation", "procedure")
            }
        finally:
            con.close()

    before = snapshot()
    again = build_warehouse(run["settings"])
    assert again["tables"] == run["build"]["tables"]
    assert snapshot() == before
