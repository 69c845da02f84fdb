"""Warehouse build DAG, triggered whenever any hospital's reconciled FHIR asset is updated."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import reduce
from operator import or_
from pathlib import Path

import pendulum
from airflow.sdk import Asset, AssetAny, dag, task

# Same rule as pipeline.settings: $WALNUT_MAPPINGS, else the mappings/ folder beside dags/.
MAPPINGS_DIR = Path(
    os.environ.get("WALNUT_MAPPINGS") or Path(__file__).resolve().parents[1] / "mappings"
)

DEFAULT_ARGS = {
    "owner": "walnut",
    "retries": 2,
    # Airflow 3.3 takes a multiplier here (True == 1 means a constant delay).
    "retry_exponential_backoff": 2.0,
    "retry_delay": timedelta(minutes=1),
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}

DOC_MD = """\
# Walnut warehouse build

Runs whenever a nightly hospital sync reconciles a batch (any asset `walnut_fhir_<hospital>`
updated). Flattens every hospital's FHIR layer through the ViewDefinitions into `core.*`, rebuilds
the `cohort.*` marts and `gov.*` tables, exports Parquet, and swaps
`$WALNUT_HOME/warehouse/walnut.duckdb` in atomically so analysts never see half a load.
One run at a time: DuckDB allows one writer per file.
"""


def list_hospitals(mappings_dir: Path = MAPPINGS_DIR) -> list[str]:
    """Hospital ids: mapping folders holding a source.yaml (same rule as walnut_sync.py)."""
    return sorted(
        path.parent.name
        for path in mappings_dir.glob("*/source.yaml")
        if not path.parent.name.startswith(("_", "."))
    )


def fhir_asset(hospital: str) -> Asset:
    """The asset walnut_sync.py's reconcile task updates for this hospital."""
    return Asset(name=f"walnut_fhir_{hospital}", group="walnut")


def build_schedule(hospitals: list[str]) -> Asset | AssetAny | None:
    """Any one hospital's asset triggers a build; no hospital yet means manual runs only."""
    if not hospitals:
        return None
    return reduce(or_, (fhir_asset(hospital) for hospital in hospitals))


@dag(
    dag_id="walnut_build_warehouse",
    schedule=build_schedule(list_hospitals()),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["walnut", "warehouse"],
    doc_md=DOC_MD,
)
def walnut_build_warehouse() -> None:
    @task(task_id="build_warehouse")
    def build_warehouse() -> dict:
        """Counts only (tables, rows) go to XCom."""
        from pipeline.build import build_warehouse as run_build

        return run_build()

    build_warehouse()


walnut_build_warehouse()
