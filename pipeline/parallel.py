"""Sync several hospitals at once, one process each, as the Airflow DAGs run side by side.

A hospital's staging and validation run on one core; syncing hospitals in parallel keeps the
second core busy. Processes are forked after the heavy imports, so a worker starts in
milliseconds instead of re-importing Great Expectations and fhir.resources.

Each hospital gets a fresh process that exits when its sync ends: a process reused for the next
hospital would start it with all the memory the previous one left in its allocators (~100 MB at
~1M rows), and the FHIR workers it forks would inherit that too.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from pipeline.settings import Settings, load_settings
from pipeline.sync import hospital_run_date, sync_hospital
from transforms.errors import WalnutError
from transforms.processes import frozen_heap, processes


class SyncProcessDied(RuntimeError):
    """A hospital's sync process ended without a result (killed, or crashed in native code)."""


def default_jobs() -> int:
    """Processes for `walnut sync --all`: WALNUT_SYNC_JOBS, else the CPUs this process may use."""
    return processes("WALNUT_SYNC_JOBS")


def _preload(hospitals: Sequence[str], settings: Settings) -> None:
    """Import GX and the FHIR models and build the suites' plans once, before forking, so
    every worker starts with them instead of paying for them again.

    Plans are per run date, the date in each hospital's time zone: warmed for the machine's
    date instead, every hospital process rebuilt them (~1 s) whenever the two differ, as from
    16:00 UTC for a hospital in China.
    """
    import transforms.fhir.mapper  # noqa: F401
    from expectations.runner import warm_up
    from transforms.canonical import TABLES

    dates = set()
    for hospital in hospitals:
        try:
            dates.add(hospital_run_date(hospital, settings))
        except WalnutError:  # a broken mapping: the hospital's own sync reports it
            continue
    for run_date in sorted(dates):
        warm_up(tuple(TABLES), run_date)


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
    _preload(hospitals, settings)
    waiting = list(hospitals)
    running: dict[Connection, tuple[str, BaseProcess]] = {}
    while waiting or running:
        while waiting and len(running) < jobs:
            hospital = waiting.pop(0)
            reader, process = _start(hospital, settings)
            running[reader] = (hospital, process)
        for reader in wait(list(running)):
            hospital, process = running.pop(reader)
            yield hospital, _outcome(hospital, reader, process)


def _start(hospital: str, settings: Settings) -> tuple[Connection, BaseProcess]:
    """Fork a process syncing one hospital; it sends its load run (or exception) and exits."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(
        target=_sync_and_send, args=(hospital, settings, writer), name=f"walnut-sync-{hospital}"
    )
    with frozen_heap():
        process.start()
    writer.close()  # the child's copy stays open: EOF here means the child is gone
    return reader, process


def _sync_and_send(hospital: str, settings: Settings, writer: Connection) -> None:
    try:
        outcome: dict | Exception = sync_hospital(hospital, settings)
    except Exception as exc:  # sent to the parent, which reports it per hospital
        outcome = exc
    try:
        writer.send(outcome)
    except Exception:  # an exception that does not pickle: send its type and message instead
        writer.send(RuntimeError(f"{type(outcome).__name__}: {outcome}"))
    writer.close()


def _outcome(hospital: str, reader: Connection, process: BaseProcess) -> dict | Exception:
    """The child's load run or exception; SyncProcessDied if it ended without sending one."""
    try:
        outcome = reader.recv()
    except EOFError:
        outcome = None
    finally:
        reader.close()
        process.join()
    if outcome is None:
        return SyncProcessDied(
            f"{hospital}: the sync process ended without a result (exit code "
            f"{process.exitcode}); its batch stays unfinished and the next sync starts it again"
        )
    return outcome
