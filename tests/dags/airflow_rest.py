"""Helpers for tests over a running Airflow: start a throwaway stack, drive it by REST API v2."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx

from deploy.airflow import stack
from tests.conftest import require

TERMINAL = {"success", "failed"}
HOSPITALS = ["east_liver", "north_chest", "south_general"]
SYNC_TASKS = {"land", "stage", "validate", "map_to_fhir", "apply_deletions", "reconcile"}
BUILD_DAG = "walnut_build_warehouse"


class AirflowApi:
    """A bearer-token client for /api/v2 (token from POST /auth/token with the admin password)."""

    def __init__(self, base_url: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        resp = self.http.post("/auth/token", json={"username": "admin", "password": password})
        assert resp.status_code in (200, 201), resp.text
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        resp = self.http.request(method, "/api/v2" + path, **kwargs)
        assert resp.is_success, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def unpause(self, dag_id: str) -> None:
        assert (
            self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})["is_paused"] is False
        )

    def trigger(self, dag_id: str) -> str:
        """A manual run now (`logical_date: null`, the Airflow 3 way); returns its run id."""
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None})[
            "dag_run_id"
        ]

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.call("GET", path, params={"limit": 100})["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def queued_asset_events(self, dag_id: str) -> int:
        return self.call("GET", f"/dags/{dag_id}/assets/queuedEvents")["total_entries"]

    def wait_runs(self, runs: dict[str, str], timeout: float) -> dict[str, str]:
        """Poll {dag_id: run_id} until every run is terminal; returns their states."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {dag_id: self.run_state(dag_id, run_id) for dag_id, run_id in runs.items()}
            if set(states.values()) <= TERMINAL:
                return states
            time.sleep(3)
        raise TimeoutError(f"runs not finished after {timeout:.0f}s: {states}")

    def wait_builds_settled(self, timeout: float, at_least: int = 1) -> list[dict]:
        """Asset-triggered builds: wait until none is queued, pending or running twice in a row."""
        deadline = time.monotonic() + timeout
        calm = 0
        runs: list[dict] = []
        while time.monotonic() < deadline:
            runs = self.runs(BUILD_DAG)
            settled = (
                len(runs) >= at_least
                and all(run["state"] in TERMINAL for run in runs)
                and self.queued_asset_events(BUILD_DAG) == 0
            )
            calm = calm + 1 if settled else 0
            if calm >= 3:
                return runs
            time.sleep(3)
        raise TimeoutError(f"builds not settled after {timeout:.0f}s: {runs}")


def stack_env(walnut_home: Path) -> dict[str, str]:
    """The pytest environment minus Airflow and Walnut settings, plus the demo key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "WALNUT_")) or k == "WALNUT_PSEUDONYM_KEY"
    }
    env.update(WALNUT_HOME=str(walnut_home), WALNUT_DEMO="1")
    return env


def run_stack(base: Path, **overrides) -> Iterator[tuple[stack.StackConfig, AirflowApi]]:
    """Start a throwaway stack on a fresh PostgreSQL database; stop it and drop the database after.

    A generator for a fixture: whatever happens in the tests, what it started is stopped.
    """
    role = stack.find_postgres_role()
    require(role is not None, "PostgreSQL is not reachable on 127.0.0.1:5432")
    database = f"walnut_airflow_test_{uuid.uuid4().hex[:10]}"
    stack.ensure_database(database, role)
    config = stack.StackConfig(
        airflow_home=base / "airflow_home",
        walnut_home=base / "walnut_home",
        db_url=stack.postgres_url(database, role),
        port=stack.find_free_port(),
        log_server_port=stack.find_free_port(),
        trigger_log_server_port=stack.find_free_port(),
        extra_env={"AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "20"},
    )
    config = replace(
        config, **{k: v(database, role) if callable(v) else v for k, v in overrides.items()}
    )
    try:
        stack.start_stack(config, stack_env(config.walnut_home))
        stack.wait_healthy(config, timeout=300)
        yield config, AirflowApi(config.base_url, stack.read_admin_password(config))
    finally:
        stopped = stack.stop_stack(config)
        print(f"\nstopped {stopped}; logs were in {config.logs_dir}")
        stack.drop_database(database, role)
