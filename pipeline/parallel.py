"""Sync several hospitals at once, one process each, as the Airflow DAGs run side by side.

A hospital's staging and validation run on one core; syncing hospitals in parallel keeps the
second core busy. Processes are forked after the heavy imports, so a worker starts in
milliseconds instead of re-importing Great Expectations and fhir.resources.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from pipeline.settings import Settings, load_settings
from pipeline.sync import sync_hospital
from transforms.processes import frozen_heap, processes


def default_jobs() -> int:
    """Processes for `walnut sync --all`: WALNUT_SYNC_JOBS, else the CPUs this process may use."""
    return processes("WALNUT_SYNC_JOBS")


def _preload() -> None:
    """Import GX and the FHIR models and build the suites' plans once, before forking, so
    every worker starts with them instead of paying for them again."""
    import datetime as dt

    import transforms.fhir.mapper  # noqa: F401
    from expectations.runner import warm_up
    from transforms.canonical import TABLES

    warm_up(tuple(TABLES), dt.date.today())


def sync_hospitals(
    hospitals: Sequence[str], settings: Settings | None = None, jobs: int | None = None
) -> Iterator[tuple[str, dict | Exception]]:
    """(hospital, load run or the exception it raised), in order of completion.

    One hospital's failure does not stop the others; the caller decides what to report.
    """
    settings = settings or load_settings()
    jobs = min(jobs or default_jobs(), len(hospitals))
    if jobs <= 1:
        for hospital in hospitals:
            try:
                yield hospital, sync_hospital(hospital, settings)
            except Exception as exc:  # reported per hospital by the caller
                yield hospital, exc
        return
    _preload()
    context = multiprocessing.get_context("fork")
    with frozen_heap(), ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(sync_hospital, h, settings): h for h in hospitals}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # reported per hospital by the caller
                yield futures[future], exc
