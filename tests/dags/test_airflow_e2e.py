"""End to end over real Airflow components on PostgreSQL, driven only through the REST API v2.

One stack per module (fresh database, temp AIRFLOW_HOME and WALNUT_HOME with synthetic sources);
the tests run in file order: first sync of every hospital, an idempotent second one, then a
scheduler killed mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from deploy.airflow import stack
from tests.dags.airflow_rest import (
    BUILD_DAG,
    HOSPITALS,
    SYNC_TASKS,
    AirflowApi,
    run_stack,
    stack_env,
)

pytestmark = pytest.mark.slow
SKIPPED_AFTER_LAND = {"land": "success", **dict.fromkeys(SYNC_TASKS - {"land"}, "skipped")}
ALL_SUCCESS = dict.fromkeys(SYNC_TASKS, "success")


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[stack.StackConfig, AirflowApi]]:
    from synthetic.generate import generate_all

    base = tmp_path_factory.mktemp("airflow_e2e")
    generate_all(base / "walnut_home" / "sources", patients=30)
    yield from run_stack(base)


def count_patients(walnut_home: Path) -> dict[str, int]:
    """core.patient rows per hospital (the hospital is the lineage URN's third part)."""
    with duckdb.connect(str(walnut_home / "warehouse" / "walnut.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT split_part(lineage, ':', 3), count(*) FROM core.patient GROUP BY ALL"
        ).fetchall()
    return dict(rows)


def count_tables(walnut_home: Path) -> dict[str, int]:
    """Row count of every core.* and fhir.* table: equal counts mean nothing was duplicated."""
    with duckdb.connect(str(walnut_home / "warehouse" / "walnut.duckdb"), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('core', 'fhir') ORDER BY 1"
        ).fetchall()
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables}


def sync_run_states(api: AirflowApi) -> dict[str, list[dict[str, str]]]:
    """Task states of every run of every hospital DAG, oldest run first."""
    return {
        h: [
            api.task_states(f"walnut_sync_{h}", run["dag_run_id"])
            for run in sorted(api.runs(f"walnut_sync_{h}"), key=lambda r: r["queued_at"])
        ]
        for h in HOSPITALS
    }


def trigger_all(api: AirflowApi) -> dict[str, str]:
    runs = {f"walnut_sync_{h}": api.trigger(f"walnut_sync_{h}") for h in HOSPITALS}
    assert api.wait_runs(runs, timeout=600) == dict.fromkeys(runs, "success")
    return runs


def wait_all_sync_runs(api: AirflowApi, timeout: float = 600) -> None:
    """Unpausing may add the latest nightly run next to ours: wait until every run is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [run for h in HOSPITALS for run in api.runs(f"walnut_sync_{h}")]
        if all(run["state"] in {"success", "failed"} for run in runs):
            return
        time.sleep(3)
    raise TimeoutError("hospital runs still going")


@pytest.fixture(scope="module")
def first_round(airflow: tuple[stack.StackConfig, AirflowApi]) -> dict:
    config, api = airflow
    api.unpause(BUILD_DAG)
    for h in HOSPITALS:
        api.unpause(f"walnut_sync_{h}")
    started = time.monotonic()
    manual = trigger_all(api)
    wait_all_sync_runs(api)
    builds = api.wait_builds_settled(timeout=300)
    print(f"\nfirst round: {time.monotonic() - started:.0f}s")
    return {
        "manual": manual,
        "runs": sync_run_states(api),
        "builds": builds,
        "patients": count_patients(config.walnut_home),
        "tables": count_tables(config.walnut_home),
    }


def test_components_report_healthy(airflow: tuple[stack.StackConfig, AirflowApi]) -> None:
    config, _ = airflow
    health = stack.fetch_health(config)
    assert stack.is_healthy(health), health
    assert config.db_url.startswith("postgresql+psycopg2://")


def test_every_hospital_batch_runs_each_task_to_success_once(first_round: dict) -> None:
    """The batch is loaded by exactly one run; any other run found nothing new (short-circuit)."""
    for hospital, runs in first_round["runs"].items():
        loaded = [states for states in runs if states == ALL_SUCCESS]
        assert len(loaded) == 1, (hospital, runs)
        assert all(states in (ALL_SUCCESS, SKIPPED_AFTER_LAND) for states in runs), hospital


def test_the_warehouse_build_started_by_itself_and_succeeded(first_round: dict) -> None:
    builds = first_round["builds"]
    assert builds and {run["run_type"] for run in builds} == {"asset_triggered"}
    assert {run["state"] for run in builds} == {"success"}


def test_the_warehouse_holds_patients_of_every_hospital(first_round: dict) -> None:
    patients = first_round["patients"]
    assert set(patients) == set(HOSPITALS)
    assert all(count > 0 for count in patients.values()), patients


def test_a_second_trigger_loads_nothing_twice(
    airflow: tuple[stack.StackConfig, AirflowApi], first_round: dict
) -> None:
    config, api = airflow
    runs = trigger_all(api)
    for dag_id, run_id in runs.items():
        assert api.task_states(dag_id, run_id) == SKIPPED_AFTER_LAND, dag_id
    time.sleep(10)  # a build would be queued by now if any asset had been updated
    assert len(api.wait_builds_settled(timeout=120)) == len(first_round["builds"])
    assert count_tables(config.walnut_home) == first_round["tables"]
    assert count_patients(config.walnut_home) == first_round["patients"]


def read_load_runs(walnut_home: Path, hospital: str) -> list[dict]:
    return [
        json.loads(path.read_text())
        for path in sorted((walnut_home / "gov" / hospital).glob("*/load_run.json"))
    ]


def wait_task_running(api: AirflowApi, dag_id: str, run_id: str, timeout: float = 300) -> str:
    """The first task seen running after land (a batch is mid-flight)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = api.task_states(dag_id, run_id)
        running = [t for t, s in states.items() if s == "running" and t != "land"]
        if running:
            return running[0]
        time.sleep(1)
    raise TimeoutError(f"no task running in {dag_id}: {states}")


def test_a_killed_scheduler_restarts_and_the_run_completes_balanced(
    airflow: tuple[stack.StackConfig, AirflowApi], first_round: dict
) -> None:
    """SIGKILL the scheduler and its executor processes mid-batch, as a crashed host would,
    restart it via the stack: the run finishes and the new batch still balances.

    The whole process group goes: executor workers left alive keep the dead scheduler's
    database transaction (and its row lock on the dag run) open, which is not a crash."""
    from synthetic.generate import generate_all

    config, api = airflow
    hospital = "east_liver"
    dag_id = f"walnut_sync_{hospital}"
    generate_all(config.walnut_home / "sources", patients=20, seed=7)  # a new export arrives
    run_id = api.trigger(dag_id)
    wait_task_running(api, dag_id, run_id)
    old_scheduler = stack.read_pid(config, "scheduler")
    os.killpg(old_scheduler, signal.SIGKILL)
    try:
        time.sleep(3)
        assert stack.start_stack(config, stack_env(config.walnut_home)) == ["scheduler"]
        stack.wait_healthy(config, timeout=180)
        assert api.wait_runs({dag_id: run_id}, timeout=600) == {dag_id: "success"}
    finally:
        stack.stop_process_group(old_scheduler, timeout=5)  # its orphaned task processes
    assert api.task_states(dag_id, run_id) == ALL_SUCCESS
    load_runs = read_load_runs(config.walnut_home, hospital)
    assert len(load_runs) == 2
    for run in load_runs:
        assert run["status"] == "success"
        assert run["read"] > 0
        assert run["read"] == run["loaded"] + run["quarantined"] + run["dropped"]
