"""Sync several hospitals at once, one process each, as the Airflow DAGs run side by side.

A hospital's staging and validation run on one core; syncing hospitals in parallel keeps the
second core busy.

Landing and staging need neither Great Expectations nor the FHIR models. They run in `jobs`
processes forked before this process imports those (about 2 s on one core, most of a nightly
delta's fixed cost), which take hospitals in turn: the first at once, the others once the
imports are done, so that they leave the imports a core. Staging in a process without them
keeps its peak ~100 MB lower: at ~1M rows a hospital staged in a process forked after the
imports peaked at 442 MB, the same staging before them at ~340 MB.

Each staged batch is then finished (validated, mapped, reconciled) in a fresh process forked
after the imports, so it starts in milliseconds instead of importing them again. A process
reused for the next hospital would start it with all the memory the previous one left in its
allocators (~100 MB at ~1M rows), and the FHIR workers it forks would inherit that too.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from pipeline import sync
from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError
from transforms.processes import fork_worker, processes, send_outcome


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
    context = multiprocessing.get_context("fork")
    claimed = context.Value("i", 0)  # next hospital to take
    imported = context.Event()
    running: dict[Connection, _Child] = {}
    for start in [None] + [imported] * (jobs - 1):
        reader, process = fork_worker(_stage_in_turn, hospitals, settings, claimed, start)
        running[reader] = _Child([], process, claims=True)
    try:
        _preload(hospitals, settings)
    except BaseException:
        with claimed.get_lock():  # the stagers finish what they took and take no more
            claimed.value = len(hospitals)
        raise
    finally:
        imported.set()
    staged: deque[tuple[str, str]] = deque()
    while staged or running:
        while len(running) < jobs and staged:
            hospital, batch_id = staged.popleft()
            reader, process = fork_worker(_finish_one, hospital, batch_id, settings)
            running[reader] = _Child([hospital], process)
        for reader in wait(list(running)):
            child = running[reader]
            for hospital, outcome in child.received(reader):
                if isinstance(outcome, str):  # a batch a stager staged
                    staged.append((hospital, outcome))
                else:
                    yield hospital, sync.nothing_new(hospital) if outcome is None else outcome
            if child.done:
                del running[reader]


class _Claimed:
    """A stager's message that it took a hospital: it owes that hospital's outcome."""


class _Child:
    """A forked process and the hospitals it owes an outcome for.

    A finisher owes its one hospital and is done once it sent it; a stager (`claims`) owes
    the hospitals it took so far, and is done at EOF, when it has taken its last.
    """

    def __init__(self, owed: list[str], process: BaseProcess, claims: bool = False) -> None:
        self.owed = owed
        self.process = process
        self.claims = claims
        self.done = False

    def received(self, reader: Connection) -> Iterator[tuple[str, Any]]:
        """The next (hospital, outcome) it sent. Once it is done, or at EOF, it is reaped and
        every hospital it still owed gets SyncProcessDied."""
        try:
            hospital, outcome = reader.recv()
        except EOFError:
            hospital = None
        if hospital is not None:
            if isinstance(outcome, _Claimed):
                self.owed.append(hospital)
                return
            self.owed.remove(hospital)
            yield hospital, outcome
            if self.owed or self.claims:
                return
        reader.close()
        self.process.join()
        self.done = True
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


def _stage_in_turn(
    hospitals: list[str],
    settings: Settings,
    claimed: Synchronized,
    start: Event | None,
    writer: Connection,
) -> None:
    """Once `start` is set (None: at once), land and stage hospitals in turn until none is left
    to take; sends _Claimed() for each one taken, then its batch id (None: nothing new) or
    exception."""
    parent = multiprocessing.parent_process()
    while start is not None and not start.wait(1.0):
        if parent is not None and not parent.is_alive():  # nobody left to stage for
            return
    while True:
        with claimed.get_lock():
            index = claimed.value
            if index >= len(hospitals):
                return
            claimed.value = index + 1
        hospital = hospitals[index]
        writer.send((hospital, _Claimed()))
        _send(writer, hospital, partial(sync.land_and_stage, hospital, settings))


def _finish_one(hospital: str, batch_id: str, settings: Settings, writer: Connection) -> None:
    _send(writer, hospital, partial(sync.finish_batch, hospital, batch_id, settings))


def _send(writer: Connection, hospital: str, work: partial) -> None:
    send_outcome(writer, work, lambda outcome: (hospital, outcome))
