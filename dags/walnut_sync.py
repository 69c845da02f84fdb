"""Nightly sync DAGs, one per hospital under mappings/: land, stage, validate, FHIR, reconcile."""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, CronTriggerTimetable, Metadata, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

# Same rule as pipeline.settings: $WALNUT_MAPPINGS, else the mappings/ folder beside dags/.
MAPPINGS_DIR = Path(
    os.environ.get("WALNUT_MAPPINGS") or Path(__file__).resolve().parents[1] / "mappings"
)
# Every hospital onboarded so far runs on China Standard Time; per-hospital zones come later.
HOSPITAL_TIMEZONE = "Asia/Shanghai"
SYNC_CRON = "0 2 * * *"

DEFAULT_ARGS = {
    "owner": "walnut",
    "retries": 2,
    # Airflow 3.3 takes a multiplier here (True == 1 means a constant delay): 1, 2, 4 min...
    "retry_exponential_backoff": 2.0,
    "retry_delay": timedelta(minutes=1),
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}

DOC_MD = """\
# Walnut nightly sync: `{hospital}`

Runs at 02:00 {tz} and moves every new export of hospital `{hospital}` one layer at a time,
as configured in `mappings/{hospital}/source.yaml`:

1. **land**: copy new source files to `$WALNUT_HOME/landing/` with a manifest (sha256, batch
   id). Files already landed are skipped; when nothing new arrived the run stops here, green,
   and every later task shows as *skipped* ("nothing new").
2. **stage**: canonical, typed, pseudonymised Parquet per table with lineage columns.
3. **validate**: Great Expectations suites; *critical* failures fail the run (no retry),
   *quarantine* rows go to `gov.quarantine`.
4. **map_to_fhir**: validated FHIR R4 resources (mCODE-aligned) per resource type.
5. **apply_deletions**: rows deleted at the source (HIS tombstone table) become tombstones for
   the resources they produced, so the next warehouse build removes them.
6. **reconcile**: rows read = loaded + quarantined + dropped. A batch that does not balance
   fails the run (no retry). On success it updates the asset `walnut_fhir_{hospital}` with the
   batch counts, which triggers `walnut_build_warehouse`.

XComs hold only the batch id and counts, never patient data. Fix a mapping under
`mappings/{hospital}/` and clear the failed task to replay.
"""


def list_hospitals(mappings_dir: Path = MAPPINGS_DIR) -> list[str]:
    """Hospital ids: mapping folders holding a source.yaml (a cheap listing, safe at parse time)."""
    return sorted(
        path.parent.name
        for path in mappings_dir.glob("*/source.yaml")
        if not path.parent.name.startswith(("_", "."))
    )


def fhir_asset(hospital: str) -> Asset:
    """The asset a hospital's reconciled FHIR layer stands for; walnut_build.py names it alike."""
    return Asset(name=f"walnut_fhir_{hospital}", group="walnut")


def build_sync_dag(hospital: str) -> DAG:
    """One hospital's nightly DAG; task bodies only call pipeline.sync (imported at run time)."""
    asset = fhir_asset(hospital)

    @dag(
        dag_id=f"walnut_sync_{hospital}",
        schedule=CronTriggerTimetable(SYNC_CRON, timezone=HOSPITAL_TIMEZONE),
        start_date=pendulum.datetime(2026, 1, 1, tz=HOSPITAL_TIMEZONE),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["walnut", "sync", hospital],
        doc_md=DOC_MD.format(hospital=hospital, tz=HOSPITAL_TIMEZONE),
    )
    def walnut_sync() -> None:
        @task.short_circuit(task_id="land")
        def land() -> str | None:
            """Return the new batch id; None short-circuits the run (nothing new landed)."""
            from pipeline.sync import land_sources

            batch_id = land_sources(hospital)
            if batch_id is None:
                log.info("Nothing new landed for hospital %s; skipping the rest", hospital)
            return batch_id

        @task(task_id="stage")
        def stage(batch_id: str) -> dict:
            from pipeline.sync import stage_batch

            return stage_batch(hospital, batch_id)

        @task(task_id="validate")
        def validate(batch_id: str) -> dict:
            """A critical data-quality failure is deterministic: fail without retrying."""
            from pipeline.sync import validate_batch
            from transforms.errors import ValidationFailed

            try:
                return validate_batch(hospital, batch_id)
            except ValidationFailed as exc:
                raise AirflowFailException(str(exc)) from exc

        @task(task_id="map_to_fhir")
        def map_to_fhir(batch_id: str) -> dict:
            from pipeline.sync import map_batch_to_fhir

            return map_batch_to_fhir(hospital, batch_id)

        @task(task_id="apply_deletions")
        def apply_deletions(batch_id: str) -> dict:
            """Rows deleted at the source become tombstones for the resources they produced."""
            from pipeline.sync import apply_deletions as apply

            return apply(hospital, batch_id)

        @task(task_id="reconcile", outlets=[asset])
        def reconcile(batch_id: str) -> Generator[Metadata, None, dict]:
            """An unbalanced batch fails without retrying; a balanced one updates the asset."""
            from pipeline.sync import reconcile_batch
            from transforms.errors import ReconciliationError

            try:
                metrics = reconcile_batch(hospital, batch_id)
            except ReconciliationError as exc:
                raise AirflowFailException(str(exc)) from exc
            yield Metadata(asset, extra={"hospital": hospital, "batch_id": batch_id, **metrics})
            return metrics

        batch_id = land()
        chain(
            batch_id,
            stage(batch_id),
            validate(batch_id),
            map_to_fhir(batch_id),
            apply_deletions(batch_id),
            reconcile(batch_id),
        )

    return walnut_sync()


for _hospital in list_hospitals():
    globals()[f"walnut_sync_{_hospital}"] = build_sync_dag(_hospital)
