"""Replay: fix a broken code mapping, replay its quarantine, see the rows reach the warehouse."""

from __future__ import annotations

import csv
import io
import json
import shutil

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.quarantine_state import quarantine_state_sql
from pipeline.replay import origin_of, plan_replay, quarantine_state
from pipeline.settings import REPO_ROOT, load_settings
from tests.phi_scan import find_phi, find_phi_in_text
from tests.warehouse.warehouse_home import snapshot

HOSPITAL = "east_liver"
RULE = "lab.code_mapped"


def _entry(batch: str, row: int, rule: str, table: str = "lab") -> dict:
    return {
        "hospital": HOSPITAL,
        "batch_id": batch,
        "table": table,
        "source_file": "lab.csv",
        "source_row": row,
        "row_hash": f"h{row}",
        "stage": "validate",
        "rule_id": rule,
        "reason": "why",
        "payload": None,
    }


def test_origin_of_strips_the_replay_suffix() -> None:
    assert origin_of("20260101T000000Z-abc-replay-002") == "20260101T000000Z-abc"
    assert origin_of("20260101T000000Z-abc") == "20260101T000000Z-abc"


def test_state_marks_released_superseded_and_open_entries() -> None:
    b, r1 = "20260101T000000Z-aa", "20260101T000000Z-aa-replay-001"
    entries = pd.DataFrame(
        [
            _entry(b, 1, RULE),  # released by r1
            _entry(b, 2, RULE),  # retried in r1, still failing: superseded
            _entry(b, 2, "lab.unit_convertible"),
            _entry(r1, 2, "lab.range_alt"),  # its new reason: open
            _entry(b, 3, "lab.patient_known"),  # never replayed: open
        ]
    )
    releases = pd.DataFrame(
        [
            {
                "hospital": HOSPITAL,
                "table": "lab",
                "original_batch_id": b,
                "source_file": "lab.csv",
                "source_row": 1,
                "replay_batch_id": r1,
                "released_at": "2026-01-02T00:00:00+00:00",
            }
        ]
    )
    con = duckdb.connect()
    con.register("e", entries)
    con.register("r", releases)
    state = con.execute(quarantine_state_sql("e", "r")).df()
    got = {
        (row.batch_id, row.source_row, row.rule_id): (bool(row.open), row.released_by)
        for row in state.itertuples()
    }
    assert got[(b, 1, RULE)] == (False, r1)
    assert got[(b, 2, RULE)][0] is False and pd.isna(got[(b, 2, RULE)][1])
    assert got[(r1, 2, "lab.range_alt")][0] is True
    assert got[(b, 3, "lab.patient_known")][0] is True
    plans = plan_replay(state, rule="lab.range_*")
    assert [(p.origin, p.rows) for p in plans] == [(b, {("lab", "lab.csv", 2)})]
    assert list(plans[0].open_entries["rule_id"]) == ["lab.range_alt"]
    assert plan_replay(state, rule="diagnosis.*") == []


def _needles(settings) -> set[str]:
    raw = (settings.sources / HOSPITAL / "患者.csv").read_bytes()
    needles: set[str] = set()
    for row in csv.DictReader(io.StringIO(raw.decode("gb18030", errors="replace"))):
        needles |= {row["姓名"], row["身份证号"], row["联系电话"], row["住院号"]}
    return {n for n in needles if n and len(n) >= 2}


def _open_afp(settings) -> int:
    state = quarantine_state(settings, HOSPITAL)
    rows = state[state["open"] & (state["rule_id"] == RULE)]
    return sum(json.loads(p)["local_code"] == "AFP" for p in rows["payload"])


def _afp_in_warehouse(settings) -> tuple[int, int]:
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        return con.execute(
            "SELECT count(*), count(DISTINCT observation_id) FROM core.observation "
            "WHERE code = '1834-1'"
        ).fetchone()
    finally:
        con.close()


@pytest.mark.slow
def test_replay_after_fixing_a_code_mapping(tmp_path) -> None:
    from pipeline.replay import replay_quarantine
    from pipeline.sync import sync_hospital
    from synthetic.generate import generate_all
    from warehouse.build import build_warehouse
    from warehouse.dq_report import write_dq_report
    from warehouse.trace import trace_resource

    mappings = tmp_path / "mappings"
    shutil.copytree(REPO_ROOT / "mappings", mappings)
    codes = mappings / HOSPITAL / "codes" / "lab.csv"
    good = codes.read_text(encoding="utf-8")
    codes.write_text(
        "".join(line for line in good.splitlines(True) if not line.startswith("AFP,")), "utf-8"
    )
    env = {"WALNUT_HOME": str(tmp_path / "home"), "WALNUT_DEMO": "1"}
    settings = load_settings(env | {"WALNUT_MAPPINGS": str(mappings)})
    generate_all(settings.sources, patients=40, seed=11)
    first = sync_hospital(HOSPITAL, settings)
    build_warehouse(settings)
    assert _open_afp(settings) > 20
    assert _afp_in_warehouse(settings) == (0, 0)

    codes.write_text(good, "utf-8")  # the fix
    result = replay_quarantine(HOSPITAL, rule=RULE, settings=settings)
    (replay,) = result["replays"]
    replay_id = replay["batch_id"]
    assert replay_id == f"{first['batch_id']}-replay-001"
    assert replay["released"] > 20 and replay["not_found"] == 0
    assert _open_afp(settings) == 0
    gov = settings.gov / HOSPITAL / replay_id
    run = json.loads((gov / "load_run.json").read_text(encoding="utf-8"))
    assert run["kind"] == "replay" and run["replay_of"] == first["batch_id"]
    assert run["read"] == replay["rows"] == run["loaded"] + run["quarantined"] + run["dropped"]
    release = pq.read_table(gov / "quarantine_release.parquet").to_pandas()
    assert set(release["original_batch_id"]) == {first["batch_id"]}
    assert set(release["replay_batch_id"]) == {replay_id}
    assert release.drop_duplicates(["source_file", "source_row"]).shape[0] == replay["released"]
    assert RULE in set(release["rule_id"])
    original = pq.read_table(settings.gov / HOSPITAL / first["batch_id"] / "reconciliation.parquet")
    assert original.to_pandas()["read"].sum() == first["read"]  # history untouched

    build_warehouse(settings)
    count, distinct = _afp_in_warehouse(settings)
    assert count == distinct >= replay["released"] - 5  # a few have other defects
    con = duckdb.connect(str(settings.warehouse_db), read_only=True)
    try:
        open_rule = con.execute(
            "SELECT count(*) FROM gov.quarantine WHERE open AND rule_id = ? "
            'AND payload LIKE \'%"local_code":"AFP"%\'',
            [RULE],
        ).fetchone()[0]
        released = con.execute(
            "SELECT count(DISTINCT source_row) FROM gov.quarantine "
            "WHERE rule_id = ? AND released_by = ?",
            [RULE, replay_id],
        ).fetchone()[0]
        kinds = dict(con.execute("SELECT batch_id, kind FROM gov.load_run").fetchall())
        afp_id = con.execute(
            "SELECT observation_id FROM core.observation WHERE code = '1834-1' "
            "AND batch_id = ? LIMIT 1",
            [replay_id],
        ).fetchone()[0]
    finally:
        con.close()
    assert open_rule == 0 and released > 20
    assert kinds == {first["batch_id"]: "sync", replay_id: "replay"}

    again = replay_quarantine(HOSPITAL, rule=RULE, settings=settings)
    assert again["released"] == 0
    assert all(r["batch_id"] is None for r in again["replays"])
    assert not (settings.gov / HOSPITAL / f"{first['batch_id']}-replay-002").exists()
    assert build_warehouse(settings)["status"] == "nothing new"
    assert _afp_in_warehouse(settings) == (count, distinct)
    gov_tables = ("gov.quarantine", "gov.quarantine_release", "gov.load_run", "gov.dq_result")
    incremental = {t: snapshot(settings.warehouse_db)[t] for t in gov_tables}
    build_warehouse(settings, full=True)  # gov tables read again from every batch's files
    full = {t: snapshot(settings.warehouse_db)[t] for t in gov_tables}
    assert incremental == full and len(incremental["gov.quarantine_release"]) >= released

    chain = trace_resource(f"Observation/{afp_id}", settings)
    manifest = json.loads(
        (settings.landing / HOSPITAL / first["batch_id"] / "_manifest.json").read_text("utf-8")
    )
    sha = {f["name"]: f["sha256"] for f in manifest["files"]}
    assert chain["warehouse"]["core_table"] == "core.observation"
    assert chain["staging"]["table"] == "lab" and chain["fhir"]["batch_id"] == replay_id
    assert chain["landed"]["sha256"] == sha[chain["landed"]["name"]]
    assert chain["landed"]["batch_id"] == first["batch_id"]
    assert chain["mapping"]["kind"] == "replay"
    assert {r["rule_id"] for r in chain["released_from_quarantine"]} >= {RULE}

    report = write_dq_report(settings)
    needles = _needles(settings)
    assert find_phi_in_text(json.dumps(chain, ensure_ascii=False), needles) == []
    assert find_phi(settings.home, needles) == []
    assert "lab.code_mapped" in report.read_text(encoding="utf-8")
