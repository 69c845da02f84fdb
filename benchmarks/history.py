"""A year of nightlies: the per-night costs that depend on how many batches a hospital has.

A scale's finished batches are copied (gov files, patient staging) under new batch ids until
each hospital has `batches` of them, as after a year of nightly syncs. On that home each cost
that reads a hospital's past batches is timed as a nightly run pays it: the known patients of
validation and the staged name keys of linkage, first without their cache (every batch read)
and then with it as a next night finds it; the build's gov tables in full and as an
incremental build replaces the last night's three batches. No pipeline stage runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from pipeline.settings import Settings

NEW_BATCH = "99991231T000000Z-00000000"  # sorts after every copy: the night being validated


def replicate(source: Settings, target: Path, batches: int) -> list[tuple[str, str]]:
    """Copy each hospital's finished batches round-robin into `target` until it has `batches`
    of them; returns (hospital, batch id) in order."""
    from warehouse.build import finished_batches

    made: list[tuple[str, str]] = []
    by_hospital: dict[str, list[str]] = {}
    for hospital, batch_id, _ in finished_batches(source):
        by_hospital.setdefault(hospital, []).append(batch_id)
    for hospital, ids in sorted(by_hospital.items()):
        for n in range(batches):
            original, copy = ids[n % len(ids)], f"2000{n:04d}T000000Z-{n:08d}"
            shutil.copytree(source.gov / hospital / original, target / "gov" / hospital / copy)
            patient = source.staging / hospital / "patient" / f"{original}.parquet"
            if patient.is_file():
                folder = target / "staging" / hospital / "patient"
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(patient, folder / f"{copy}.parquet")
            made.append((hospital, copy))
    return made


def _timed(work: Any) -> float:
    started = time.perf_counter()
    work()
    return round(time.perf_counter() - started, 3)


def measure(settings: Settings) -> dict[str, Any]:
    """Seconds per night of each history-dependent cost on `settings`' home (see module)."""
    from pipeline.batch_files import BatchFiles
    from pipeline.sync import KNOWN_PATIENTS, _known_patients
    from warehouse.build import _load_gov, _update_gov, finished_batches
    from warehouse.linkage import NAME_KEYS, staged_name_keys

    batches = finished_batches(settings)
    hospitals = sorted({hospital for hospital, _, _ in batches})
    tonight = [BatchFiles(settings, h, NEW_BATCH) for h in hospitals]

    def known() -> None:
        for files in tonight:
            _known_patients(files, None, set())

    con = duckdb.connect()
    con.execute("CREATE SCHEMA gov")
    con.execute("CREATE TABLE gov.applied_batch (hospital VARCHAR, batch_id VARCHAR)")
    con.executemany("INSERT INTO gov.applied_batch VALUES (?, ?)", [b[:2] for b in batches])
    for hospital in hospitals:
        for cache in (KNOWN_PATIENTS, NAME_KEYS):
            (settings.staging / hospital / cache).unlink(missing_ok=True)
    result = {
        "batches": len(batches),
        "hospitals": len(hospitals),
        "known_patients_every_batch_s": _timed(known),
        "known_patients_cached_s": _timed(known),
        "name_keys_every_batch_s": _timed(lambda: staged_name_keys(con, settings)),
        "name_keys_cached_s": _timed(lambda: staged_name_keys(con, settings)),
        "gov_every_batch_s": _timed(lambda: _load_gov(con, batches)),
    }
    _load_gov(con, batches[:-3])
    result["gov_incremental_s"] = _timed(lambda: _update_gov(con, batches[-3:]))
    con.close()
    return result
