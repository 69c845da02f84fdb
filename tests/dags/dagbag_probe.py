"""Subprocess probe: parse DAG folders or files and print a JSON summary, in a fresh interpreter.

Airflow reads its configuration when first imported, so the integrity tests run this script with
AIRFLOW_HOME and friends already set, instead of importing Airflow into the pytest process.

    python dagbag_probe.py <dag_file>... --bags <dags_folder>...

imports Airflow, then each DAG file (timing it and listing the heavy modules it pulled in), then
loads each folder into a DagBag. One fresh interpreter, so sys.modules starts clean.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
import time
import types
from pathlib import Path
from unittest import mock

MARKER = "DAGBAG_PROBE_JSON "
HEAVY_MODULES = (
    "pandas",
    "great_expectations",
    "duckdb",
    "fhir",
    "pyarrow",
    "pipeline",
    "transforms",
    "expectations",
    "warehouse",
    "synthetic",
)


def import_file(path: Path, name: str) -> float:
    """Import one file as a fresh module; return seconds spent."""
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return time.perf_counter() - start


def list_heavy_modules() -> set[str]:
    return {name for name in sys.modules if name.split(".")[0] in HEAVY_MODULES}


def probe_files(paths: list[Path]) -> dict:
    """Time Airflow's import, then each file's own first import and the heavy modules it added."""
    start = time.perf_counter()
    import airflow.sdk  # noqa: F401

    result: dict = {"airflow_import_seconds": time.perf_counter() - start, "files": {}}
    for index, path in enumerate(paths):
        before = list_heavy_modules()
        seconds = import_file(path, f"probe_dag_file_{index}")
        result["files"][path.name] = {
            "seconds": seconds,
            "heavy_modules": sorted(list_heavy_modules() - before),
        }
    return result


def list_asset_names(condition) -> list[str]:
    """Names of the assets in a schedule condition (nested any/all flattened)."""
    if condition is None:
        return []
    if hasattr(condition, "objects"):
        return [name for part in condition.objects for name in list_asset_names(part)]
    return [condition.name]


def summarise_dag(dag) -> dict:
    """Plain-data view of one DAG: what the integrity tests assert on."""
    timetable = dag.timetable
    condition = getattr(timetable, "asset_condition", None)
    return {
        "tags": sorted(dag.tags),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "doc_md": dag.doc_md or "",
        "timetable": type(timetable).__name__,
        "cron": getattr(timetable, "expression", None),
        "timezone": str(getattr(timetable, "timezone", "")) or None,
        "schedule_assets": sorted(list_asset_names(condition)),
        "task_order": [t.task_id for t in dag.topological_sort()],
        "tasks": {
            t.task_id: {
                "operator": type(t).__name__,
                "retries": t.retries,
                "retry_exponential_backoff": t.retry_exponential_backoff,
                "retry_delay_seconds": t.retry_delay.total_seconds(),
                "execution_timeout_seconds": t.execution_timeout.total_seconds()
                if t.execution_timeout
                else None,
                "upstream": sorted(t.upstream_task_ids),
                "outlets": sorted(a.name for a in t.outlets),
            }
            for t in dag.tasks
        },
    }


def call_failing_task(task, error: Exception) -> str:
    """Run a sync task's callable over a pipeline.sync whose every stage raises `error`."""
    failing = types.ModuleType("pipeline.sync")

    def fail(*args: object) -> None:
        raise error

    for name in (
        "land_sources",
        "stage_batch",
        "validate_batch",
        "map_batch_to_fhir",
        "reconcile_batch",
    ):
        setattr(failing, name, fail)
    with mock.patch.dict(sys.modules, {"pipeline.sync": failing}):
        try:
            result = task.python_callable("batch-1")
            if inspect.isgenerator(result):
                list(result)
        except Exception as exc:
            return type(exc).__name__
    return "no exception"


def probe_failures(dag) -> dict:
    """Which exception each domain failure becomes once it leaves a task (retry or not)."""
    from transforms.errors import ReconciliationError, ValidationFailed

    tasks = {t.task_id: t for t in dag.tasks}
    return {
        "validate": call_failing_task(tasks["validate"], ValidationFailed("check x failed")),
        "reconcile": call_failing_task(tasks["reconcile"], ReconciliationError("off by one")),
        "stage": call_failing_task(tasks["stage"], OSError("disk full")),
    }


def probe_bag(folder: Path) -> dict:
    """Load a folder into a DagBag and time it; try the failure paths of its first sync DAG."""
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(dag_folder=folder)
    seconds = time.perf_counter() - start
    sync_ids = sorted(dag_id for dag_id in bag.dags if dag_id.startswith("walnut_sync_"))
    return {
        "seconds": seconds,
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "dags": {dag_id: summarise_dag(dag) for dag_id, dag in bag.dags.items()},
        "failures": probe_failures(bag.dags[sync_ids[0]]) if sync_ids else {},
    }


def main(argv: list[str]) -> None:
    split = argv.index("--bags")
    result = probe_files([Path(p) for p in argv[:split]])
    result["bags"] = {folder: probe_bag(Path(folder)) for folder in argv[split + 1 :]}
    print(MARKER + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
