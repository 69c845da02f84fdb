"""End to end through Airflow: dag.test() syncs east_liver from synthetic sources, then builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("dag_run_probe.py")
MARKER = "DAG_RUN_PROBE_JSON "
HOSPITAL = "east_liver"
SYNC_DAG = f"walnut_sync_{HOSPITAL}"
BUILD_DAG = "walnut_build_warehouse"
pytestmark = pytest.mark.slow

SYNC_TASKS = {"land", "stage", "validate", "map_to_fhir", "apply_deletions", "reconcile"}


def run_env(airflow_home: Path, walnut_home: Path) -> dict[str, str]:
    """Airflow reads its config on import: a fresh SQLite home, set before the subprocess starts."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "WALNUT_")) or k == "WALNUT_PSEUDONYM_KEY"
    }
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
        WALNUT_HOME=str(walnut_home),
        WALNUT_DEMO="1",
    )
    return env


@pytest.fixture(scope="module")
def dag_runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Sync east_liver, sync again (nothing new), then build the warehouse, all via dag.test()."""
    from synthetic.generate import generate_all

    base = tmp_path_factory.mktemp("dag_run")
    walnut_home = base / "walnut_home"
    generate_all(walnut_home / "sources", patients=30)
    assert any((walnut_home / "sources" / HOSPITAL).iterdir())
    proc = subprocess.run(
        [sys.executable, str(PROBE), SYNC_DAG, SYNC_DAG, BUILD_DAG],
        env=run_env(base / "airflow_home", walnut_home),
        cwd=base,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert proc.returncode == 0 and lines, f"probe failed:\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1][len(MARKER) :])
    result["walnut_home"] = walnut_home
    result["airflow_home"] = base / "airflow_home"
    result["output"] = proc.stdout + proc.stderr
    print(
        f"\nairflow import {result['airflow_import_seconds']:.1f}s, "
        f"db migrate {result['migrate_seconds']:.1f}s, "
        + ", ".join(f"{r['dag_id']} {r['seconds']:.1f}s" for r in result["runs"])
    )
    return result


def test_dag_folder_loads_in_the_run_environment(dag_runs: dict) -> None:
    assert dag_runs["import_errors"] == {}


def test_first_sync_runs_every_task_to_success(dag_runs: dict) -> None:
    first = dag_runs["runs"][0]
    assert first["dag_id"] == SYNC_DAG
    assert first["state"] == "success"
    assert first["tasks"] == dict.fromkeys(sorted(SYNC_TASKS), "success")


def test_second_sync_finds_nothing_new_and_skips_downstream(dag_runs: dict) -> None:
    second = dag_runs["runs"][1]
    assert second["state"] == "success"
    assert second["tasks"] == {
        "land": "success",
        **dict.fromkeys(sorted(SYNC_TASKS - {"land"}), "skipped"),
    }


def test_reconcile_emits_the_hospital_asset_with_batch_counts(dag_runs: dict) -> None:
    events = dag_runs["asset_events"]
    assert [event["name"] for event in events] == [f"walnut_fhir_{HOSPITAL}"]
    extra = events[0]["extra"]
    assert extra["hospital"] == HOSPITAL
    assert extra["batch_id"]
    assert extra["status"] == "success"
    assert extra["read"] > 0
    assert extra["read"] == extra["loaded"] + extra["quarantined"] + extra["dropped"]


def test_build_writes_the_warehouse_file(dag_runs: dict) -> None:
    build = dag_runs["runs"][2]
    assert build["dag_id"] == BUILD_DAG
    assert build["state"] == "success"
    assert build["tasks"] == {"build_warehouse": "success"}
    assert (dag_runs["walnut_home"] / "warehouse" / "walnut.duckdb").is_file()


def test_no_phi_in_airflow_logs_xcom_or_metadata(dag_runs: dict) -> None:
    """Task logs, XCom and every other file Airflow wrote (its SQLite metadata DB included)."""
    from tests.phi_scan import find_phi, find_phi_in_text, planted_identifiers

    needles = planted_identifiers(dag_runs["walnut_home"] / "sources", HOSPITAL)
    assert len(needles) > 20
    assert find_phi(dag_runs["airflow_home"], needles) == []
    assert find_phi(dag_runs["walnut_home"], needles) == []
    assert find_phi_in_text(dag_runs["output"], needles) == []
