"""Subprocess probe: migrate a fresh metadata DB, then dag.test() the given DAGs; print JSON states.

Airflow reads AIRFLOW_HOME and its config on first import, so test_dag_run.py starts this script
with the environment already set (temporary AIRFLOW_HOME, SQLite, DAGS_FOLDER, WALNUT_HOME).

    python dag_run_probe.py <dag_id>...   # run in that order; a DAG id may repeat
"""

from __future__ import annotations

import json
import sys
import time

MARKER = "DAG_RUN_PROBE_JSON "


def migrate_metadata_db() -> float:
    """The Python side of `airflow db migrate`; returns seconds spent."""
    from airflow.utils import db

    start = time.perf_counter()
    db.upgradedb()
    return time.perf_counter() - start


def run_dag(dag) -> dict:
    """One dag.test() run: run state, each task instance's state, seconds spent."""
    start = time.perf_counter()
    run = dag.test()
    seconds = time.perf_counter() - start
    return {
        "state": str(run.state),
        "seconds": seconds,
        "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()},
    }


def list_asset_events() -> list[dict]:
    """Asset events recorded so far (name and extra), to check the reconcile task's metrics."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra).join(
                AssetModel, AssetModel.id == AssetEvent.asset_id
            )
        ).all()
    return [{"name": name, "extra": extra} for name, extra in rows]


def main(dag_ids: list[str]) -> None:
    start = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    result: dict = {"airflow_import_seconds": time.perf_counter() - start}
    result["migrate_seconds"] = migrate_metadata_db()
    bag = DagBag()
    result["import_errors"] = {str(k): v for k, v in bag.import_errors.items()}
    result["runs"] = [{"dag_id": dag_id, **run_dag(bag.dags[dag_id])} for dag_id in dag_ids]
    result["asset_events"] = list_asset_events()
    print(MARKER + json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
