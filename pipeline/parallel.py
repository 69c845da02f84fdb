"""Sync several hospitals at once, one process each, as the Airflow DAGs run side by side.

A hospital's staging and validation run on one core; syncing hospitals in parallel keeps the
second core busy. Processes are forked after the heavy imports, so a worker starts in
milliseconds instead of re-importing Great Expectations and fhir.resources.

Landing and staging need neither. While this process imports them (about 2 s on one core, most
of a nightly delta's fixed cost), an early process forked before the imports lands and stages
hospitals in turn, and stops taking new ones once the imports are done. The rest of those
hospitals' syncs, and the whole sync of every other hospital, run in processes forked after.

Each of those gets a fresh process that exits when its sync ends: a process reused for the next
hospital would start it with all the memory the previous one left in its allocators (~100 MB at
~1M rows), and the FHIR workers it forks would inherit that too.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from pipeline import sync
from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError
from transforms.processes import frozen_heap, processes, send_outcome


class SyncProcessDied(RuntimeError):
    """A hospital's sync process ended without a result (killed, or crashed in native code)."""


def default_jobs() -> int:
    """Processes for `walnut sync --all`: WALNUT_SYNC_JOBS, else the CPUs this process may use."""
    return processes("WALNUT_SYNC_JOBS")


def _preload(hospitals: Sequence[str], settings: Settings) -> None:
    """Import GX and the FHIR models (every model class the resources can hold) and build the
    suites' plans once, before forking, so every worker starts with them instead of paying for
    them again.

    Plans are per run date, the date in each hospital's time zone: warmed for the machine's
    date instead, every hospital process rebuilt them (~1 s) whenever the two differ, as from
    16:00 UTC for a hospital in China.
    """
    from expectations.runner import warm_up
    from transforms.canonical import TABLES
    from transforms.fhir.mapper import RESOURCE_TYPES
    from transforms.fhir.validate import import_models

    import_models(RESOURCE_TYPES)

    dates = set()
    for hospital in hospitals:
        try:
            dates.add(sync.hospital_run_date(hospital, settings))
        except WalnutError:  # a broken mapping: the hospital's own sync reports it
            continue
    for run_date in sorted(dates):
        warm_up(tuple(TABLES), run_date)


def largest_first(hospitals: Sequence[str], settings: Settings) -> list[str]:
    """Hospitals by the bytes in their source folders, largest first (ties keep their order).

    Longest job first: at ~1M rows south_general's sync took 99 s, and started third it ran
    alone on one core for its last ~60 s. The folder's size stands in for the work; a
    hospital fed only by a database server has no folder and goes last.
    """
    sizes = {hospital: _folder_bytes(settings.source_dir(hospital)) for hospital in hospitals}
    return sorted(hospitals, key=lambda hospital: -sizes[hospital])


def _folder_bytes(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def sync_hospitals(
    hospitals: Sequence[str], settings: Settings | None = None, jobs: int | None = None
) -> Iterator[tuple[str, dict | Exception]]:
    """(hospital, load run or the exception it raised), in order of completion.

    One hospital's failure does not stop the others; the caller decides what to report.
    """
    settings = settings or load_settings()
    hospitals = largest_first(hospitals, settings)
    jobs = min(jobs or default_jobs(), len(hospitals))
    if jobs <= 1:
        for hospital in hospitals:
            try:
                yield hospital, sync.sync_hospital(hospital, settings)
            except Exception as exc:  # reported per hospital by the caller
                yield hospital, exc
        return
    claimed = multiprocessing.get_context("fork").Value("i", 0)  # next hospital to take
    early, early_process = _start(_stage_in_turn, hospitals, settings, claimed)
    try:
        _preload(hospitals, settings)
    finally:
        with claimed.get_lock():  # the early process keeps what it took and takes no more
            taken, claimed.value = claimed.value, len(hospitals)
    running = {early: _Child(hospitals[:taken], early_process)}
    to_sync = deque(hospitals[taken:])
    staged: deque[tuple[str, str]] = deque()
    while to_sync or staged or running:
        while len(running) < jobs and (staged or to_sync):
            if staged:  # before new ones: its staged files are waiting
                hospital, batch_id = staged.popleft()
                reader, process = _start(_finish_one, hospital, batch_id, settings)
            else:
                hospital = to_sync.popleft()
                reader, process = _start(_sync_and_send, hospital, settings)
            running[reader] = _Child([hospital], process)
        for reader in wait(list(running)):
            child = running[reader]
            for hospital, outcome in child.received(reader):
                if isinstance(outcome, str):  # a batch the early process staged
                    staged.append((hospital, outcome))
                else:
                    yield hospital, sync.nothing_new(hospital) if outcome is None else outcome
            if not child.owed:
                del running[reader]


class _Child:
    """A forked process and the hospitals it still owes an outcome for."""

    def __init__(self, owed: list[str], process: BaseProcess) -> None:
        self.owed = owed
        self.process = process

    def received(self, reader: Connection) -> Iterator[tuple[str, Any]]:
        """The next (hospital, outcome) it sent; once it owes nothing, or at EOF, it is reaped
        and every hospital it still owed gets SyncProcessDied."""
        try:
            hospital, outcome = reader.recv()
        except EOFError:
            hospital = None
        if hospital is not None:
            self.owed.remove(hospital)
            yield hospital, outcome
            if self.owed:
                return
        reader.close()
        self.process.join()
        for name in self.owed:
            yield (
                name,
                SyncProcessDied(
                    f"{name}: the sync process ended without a result (exit code "
                    f"{self.process.exitcode}); its batch stays unfinished and the next sync "
                    "starts it again"
                ),
            )
        self.owed = []


def _start(target: Any, *args: Any) -> tuple[Connection, BaseProcess]:
    """Fork a process running `target(*args, writer)`; it sends (hospital, outcome) pairs."""
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, writer))
    with frozen_heap():
        process.start()
    writer.close()  # the child's copy stays open: EOF here means the child is gone
    return reader, process


def _stage_in_turn(
    hospitals: list[str], settings: Settings, claimed: Synchronized, writer: Connection
) -> None:
    """Land and stage hospitals in turn until none is left to take; sends each one's batch id
    (None: nothing new) or exception."""
    while True:
        with claimed.get_lock():
            index = claimed.value
            if index >= len(hospitals):
                return
            claimed.value = index + 1
        _send(writer, hospitals[index], partial(sync.land_and_stage, hospitals[index], settings))


def _sync_and_send(hospital: str, settings: Settings, writer: Connection) -> None:
    _send(writer, hospital, partial(sync.sync_hospital, hospital, settings))


def _finish_one(hospital: str, batch_id: str, settings: Settings, writer: Connection) -> None:
    _send(writer, hospital, partial(sync.finish_batch, hospital, batch_id, settings))


def _send(writer: Connection, hospital: str, work: partial) -> None:
    send_outcome(writer, work, lambda outcome: (hospital, outcome))
