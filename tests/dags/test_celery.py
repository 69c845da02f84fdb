"""Scale-out: the same DAGs on CeleryExecutor with two workers on this machine.

RabbitMQ (or Redis when RabbitMQ is down) is the broker, the PostgreSQL metadata database the
result backend; a queue unique to this run keeps other Celery deployments' workers out of it.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from deploy.airflow import stack
from tests.conftest import require
from tests.dags.airflow_rest import BUILD_DAG, HOSPITALS, AirflowApi, run_stack

pytestmark = pytest.mark.slow
WORKERS = ("w1", "w2")
RESULT_DRIVER = "db+postgresql+psycopg2"  # plain db+postgresql asks for psycopg 3
BROKER_PORTS = {"rabbitmq": 5672, "redis": 6379}


def find_broker() -> str | None:
    """The first broker answering on loopback: RabbitMQ, else Redis."""
    for name, port in BROKER_PORTS.items():
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex((stack.HOST, port)) == 0:
                return name
    return None


@pytest.fixture(scope="module")
def celery_airflow(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[stack.StackConfig, AirflowApi]]:
    from synthetic.generate import generate_all

    broker = find_broker()
    require(broker is not None, "neither RabbitMQ (5672) nor Redis (6379) answers on 127.0.0.1")
    base = tmp_path_factory.mktemp("airflow_celery")
    generate_all(base / "walnut_home" / "sources", patients=20)
    yield from run_stack(
        base,
        executor="CeleryExecutor",
        broker_url=stack.BROKERS[broker],
        result_backend=lambda db, role: stack.postgres_url(db, role, RESULT_DRIVER),
        queue=f"walnut_test_{uuid.uuid4().hex[:8]}",
        workers=WORKERS,
        worker_concurrency=1,
        worker_log_ports=tuple(stack.find_free_port() for _ in WORKERS),
    )


@pytest.fixture(scope="module")
def celery_round(celery_airflow: tuple[stack.StackConfig, AirflowApi]) -> dict:
    """Every hospital triggered at once; task instances of every run that finished."""
    _, api = celery_airflow
    api.unpause(BUILD_DAG)
    for hospital in HOSPITALS:
        api.unpause(f"walnut_sync_{hospital}")
    runs = {f"walnut_sync_{h}": api.trigger(f"walnut_sync_{h}") for h in HOSPITALS}
    states = api.wait_runs(runs, timeout=900)
    builds = api.wait_builds_settled(timeout=300)
    dag_ids = [f"walnut_sync_{h}" for h in HOSPITALS] + [BUILD_DAG]
    instances = [
        ti
        for dag_id in dag_ids
        for run in api.runs(dag_id)
        for ti in api.task_instances(dag_id, run["dag_run_id"])
    ]
    return {"states": states, "builds": builds, "instances": instances}


def test_workers_are_celery(celery_airflow: tuple[stack.StackConfig, AirflowApi]) -> None:
    config, _ = celery_airflow
    assert config.executor == "CeleryExecutor"
    assert set(stack.running_components(config)) >= {"celery-worker-w1", "celery-worker-w2"}


def test_every_hospital_run_succeeds_on_celery(celery_round: dict) -> None:
    assert set(celery_round["states"].values()) == {"success"}
    assert {run["state"] for run in celery_round["builds"]} == {"success"}
    ran = [ti for ti in celery_round["instances"] if ti["state"] == "success"]
    assert {ti["task_id"] for ti in ran} >= {"land", "stage", "reconcile", "build_warehouse"}


def test_tasks_are_spread_across_both_workers(celery_round: dict) -> None:
    ran = [ti for ti in celery_round["instances"] if ti["state"] == "success"]
    by_worker: dict[str, int] = {}
    for ti in ran:
        by_worker[ti["hostname"]] = by_worker.get(ti["hostname"], 0) + 1
    print(f"\ntasks per worker: {by_worker}")
    assert set(by_worker) == set(WORKERS)
    assert all(count >= 2 for count in by_worker.values())
