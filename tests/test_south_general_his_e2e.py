"""South general HIS end to end: demo SQLite -> sync -> warehouse; defects, updates, deletions."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from pipeline.settings import load_settings
from pipeline.sync import sync_hospital
from tests.e2e_support import all_quarantine, gov_frame
from transforms.identity import DEMO_PSEUDONYM_KEY
from transforms.standardize import source_key_hashes
from warehouse.build import build_warehouse

pytestmark = pytest.mark.slow

HOSPITAL = "south_general"
SOURCES = {"pat_master": "patient", "diag_record": "diagnosis", "drug_order": "drug"}
EXPECTED_RULE = {
    "invalid_id_checksum": "patient.resident_id_checksum",
    "future_date": "diagnosis.diagnosis_date_not_future",
    "unknown_local_code": "{table}.code_mapped",
    "blank_mandatory": "{table}.",
}
LATER = datetime(2026, 1, 5, 2, 0)


def _staged(settings, table: str) -> pd.DataFrame:
    paths = sorted((settings.staging / HOSPITAL / table).glob("*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def _query(settings, sql: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from synthetic.generate import generate_all

    home = tmp_path_factory.mktemp("walnut_home")
    settings = load_settings({"WALNUT_HOME": str(home), "WALNUT_DEMO": "1"})
    generate_all(settings.sources, patients=40, seed=7)
    first = sync_hospital(HOSPITAL, settings)
    build_warehouse(settings)
    conditions_before = _query(settings, "SELECT condition_id, lineage FROM core.condition")

    # Change the HIS: one loaded diagnosis is deleted (tombstoned), three visits are updated.
    diagnosis = _staged(settings, "diagnosis")
    loaded = {lineage.rsplit(":", 1)[1]: cid for cid, lineage in conditions_before}
    victim = diagnosis[diagnosis["_row_hash"].isin(loaded)].iloc[0]
    keys = pd.Series([str(k) for k in range(1, 500)], dtype="string")
    hashed = source_key_hashes(keys, DEMO_PSEUDONYM_KEY, HOSPITAL, "diagnosis")
    diag_id = keys[hashed == victim["_source_key"]].iloc[0]
    engine = create_engine(f"sqlite:///{settings.sources / HOSPITAL / 'his.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM diag_record WHERE diag_id = :k"), {"k": int(diag_id)})
        conn.execute(
            text("INSERT INTO deleted_rows VALUES ('diag_record', :k, :at)"),
            {"k": diag_id, "at": LATER},
        )
        visits = [r[0] for r in conn.execute(text("SELECT visit_id FROM visit LIMIT 3"))]
        conn.execute(
            text("UPDATE visit SET updated_at = :at WHERE visit_id IN (:a, :b, :c)"),
            {"at": LATER, "a": visits[0], "b": visits[1], "c": visits[2]},
        )
    engine.dispose()
    second = sync_hospital(HOSPITAL, settings)
    build_warehouse(settings)
    third = sync_hospital(HOSPITAL, settings)
    return {
        "settings": settings,
        "first": first,
        "second": second,
        "third": third,
        "victim": loaded[victim["_row_hash"]],
        "conditions_before": len(conditions_before),
    }


def test_first_sync_reconciles_every_his_table(run: dict) -> None:
    first = run["first"]
    assert first["status"] == "success"
    assert first["read"] == first["loaded"] + first["quarantined"] + first["dropped"]
    recon = gov_frame(run["settings"], HOSPITAL, "reconciliation.parquet")
    assert {"patient", "diagnosis", "treatment", "followup"} <= set(recon["table"])
    assert recon["balanced"].all()
    assert run["settings"].landing.joinpath(HOSPITAL).is_dir()
    assert _query(run["settings"], "SELECT count(*) FROM core.patient")[0][0] > 25


def test_staged_rows_carry_the_pseudonymised_primary_key(run: dict) -> None:
    diagnosis = _staged(run["settings"], "diagnosis")
    assert diagnosis["_source_key"].notna().all()
    assert diagnosis["_source_key"].str.fullmatch("[0-9a-f]{64}").all()
    assert diagnosis["_source_file"].str.fullmatch(r"diagnosis\.\d{5}\.parquet").all()


def test_sql_defects_are_caught_by_their_rule(run: dict) -> None:
    settings = run["settings"]
    defects = pd.read_csv(settings.sources / "_truth" / "defects.csv", dtype=str)
    defects = defects[(defects["hospital"] == HOSPITAL) & defects["source_file"].isin(SOURCES)]
    assert len(defects) >= 4 and defects["source_key"].notna().all()
    quarantine = all_quarantine(settings, HOSPITAL)
    missed = []
    for d in defects.itertuples(index=False):
        source = SOURCES[d.source_file]
        staged = _staged(settings, d.table)
        wanted = source_key_hashes(
            pd.Series([d.source_key], dtype="string"), DEMO_PSEUDONYM_KEY, HOSPITAL, source
        )[0]
        hashes = set(staged.loc[staged["_source_key"] == wanted, "_row_hash"])
        rules = quarantine.loc[quarantine["row_hash"].isin(hashes), "rule_id"]
        if (
            not hashes
            or not rules.str.startswith(EXPECTED_RULE[d.kind].format(table=d.table)).any()
        ):
            missed.append((d.kind, d.source_file, sorted(rules)))
    assert not missed, missed


def test_second_sync_reads_only_changed_rows_and_counts_the_deletion(run: dict) -> None:
    second = run["second"]
    assert second["status"] == "success"
    assert second["read"] == 3 and second["deleted"] == 1
    recon = gov_frame(run["settings"], HOSPITAL, "reconciliation.parquet")
    batch = recon[recon["batch_id"] == second["batch_id"]].set_index("table")
    assert batch.at["followup", "read"] == 3
    assert batch.at["diagnosis", "read"] == 0 and batch.at["diagnosis", "deleted"] == 1
    assert run["third"]["status"] == "nothing new"


def test_deleted_row_disappears_from_the_warehouse(run: dict) -> None:
    settings = run["settings"]
    tombstones = list((settings.fhir / HOSPITAL).glob("*/_tombstones.ndjson"))
    assert len(tombstones) == 1 and run["victim"] in tombstones[0].read_text("utf-8")
    rows = _query(settings, "SELECT condition_id FROM core.condition")
    assert len(rows) == run["conditions_before"] - 1
    assert (run["victim"],) not in rows
