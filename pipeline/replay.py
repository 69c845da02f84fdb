"""Replay quarantined rows with the current mappings into a new replay batch, with an audit trail.

A quarantined row is found again by (source file, source row) in the landed files of its
original batch, inside the hospital boundary, read with the same reader and taken through
standardize -> validate -> FHIR -> reconcile as batch `<original>-replay-NNN`. That id sorts
right after the original batch, so the warehouse's newest-wins merge treats replayed rows as
of their original export, and a later export of the same record still wins. Rows that now
pass are loaded by the replay batch and get a release record
(gov/<hospital>/<replay>/quarantine_release.parquet); the others stay quarantined there with
their new reasons. A replay that would release nothing and change no reason is discarded, so
replaying with nothing changed writes nothing; FHIR ids are deterministic, so loading a row
twice overwrites it.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from pipeline.batch_files import (
    BatchFiles,
    extract_rejections,
    quarantine_frame,
    read_json,
    write_json,
    write_parquet,
)
from pipeline.quarantine_state import RELEASE_COLUMNS, RELEASE_FILE, quarantine_state_sql
from pipeline.settings import Settings, hospitals, load_settings
from transforms.canonical import arrow_schema
from transforms.errors import ConfigError
from transforms.mapping import SiteMapping, load_site_mapping

log = logging.getLogger(__name__)

REPLAY_MARK = "-replay-"
QUARANTINE_STAGES = ("extract", "validate", "fhir")
_REPLAY_ID = re.compile(r"^(?P<origin>.+)-replay-(?P<n>\d+)$")
RowKey = tuple[str, str, int]  # (table, source file, source row)


def origin_of(batch_id: str) -> str:
    """The sync batch whose landed files hold a batch's rows (itself unless a replay)."""
    match = _REPLAY_ID.match(batch_id)
    return match["origin"] if match else batch_id


def empty_release() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RELEASE_COLUMNS.items()})


def _finished(gov_dir) -> bool:
    path = gov_dir / "load_run.json"
    return path.is_file() and read_json(path).get("status") == "success"


def _read_all(paths: list) -> pd.DataFrame | None:
    frames = [pq.read_table(p).to_pandas() for p in paths if p.is_file()]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def quarantine_state(settings: Settings, hospital: str) -> pd.DataFrame:
    """Every quarantine entry of the hospital's finished batches with its open/released state."""
    folders = [p for p in sorted((settings.gov / hospital).glob("*")) if _finished(p)]
    entries = _read_all([f / f"quarantine_{s}.parquet" for f in folders for s in QUARANTINE_STAGES])
    if entries is None:
        return quarantine_frame([]).assign(
            origin_batch_id=pd.Series(dtype="string"),
            released_by=pd.Series(dtype="string"),
            released_at=pd.Series(dtype="string"),
            open=pd.Series(dtype="bool"),
        )
    releases = _read_all([f / RELEASE_FILE for f in folders])
    releases = empty_release() if releases is None else releases
    con = duckdb.connect()
    try:
        con.register("q_entries", entries)
        con.register("q_releases", releases)
        return con.execute(quarantine_state_sql("q_entries", "q_releases")).df()
    finally:
        con.close()


@dataclass(frozen=True)
class ReplayPlan:
    """Rows of one original batch to replay, with the open rule entries they carry now."""

    origin: str
    rows: set[RowKey]
    open_entries: pd.DataFrame


def plan_replay(
    state: pd.DataFrame, rule: str | None = None, batch: str | None = None
) -> list[ReplayPlan]:
    """Open rows to replay per original batch: any open entry matching `rule` (a glob) selects
    the row; all of the row's open entries then travel with it for the release record."""
    opened = state[state["open"].astype(bool)]
    if batch:
        opened = opened[opened["origin_batch_id"] == origin_of(batch)]
    chosen = opened
    if rule:
        chosen = opened[[fnmatch.fnmatchcase(r, rule) for r in opened["rule_id"]]]
    plans = []
    for origin, group in chosen.groupby("origin_batch_id", sort=True):
        rows = set(_row_keys_list(group))
        mine = opened[opened["origin_batch_id"] == origin]
        keys = _row_keys_list(mine)
        plans.append(ReplayPlan(str(origin), rows, mine[[k in rows for k in keys]]))
    return plans


def next_replay_id(settings: Settings, hospital: str, origin: str) -> str:
    """`<origin>-replay-NNN`, one past the last finished replay (a crashed one is reused)."""
    done = [
        int(m["n"])
        for p in (settings.gov / hospital).glob(f"{origin}{REPLAY_MARK}*")
        if (m := _REPLAY_ID.match(p.name)) and m["origin"] == origin and _finished(p)
    ]
    return f"{origin}{REPLAY_MARK}{max(done, default=0) + 1:03d}"


def discard_batch(files: BatchFiles) -> None:
    """Remove a replay batch's staging, FHIR and gov files (never landing: it has none)."""
    for path in (files.settings.staging / files.hospital).glob(f"*/{files.batch_id}.parquet"):
        path.unlink()
    shutil.rmtree(files.fhir, ignore_errors=True)
    shutil.rmtree(files.gov, ignore_errors=True)


def _load_context(hospital: str, settings: Settings) -> SiteMapping:
    if hospital not in hospitals(settings):
        raise ConfigError(
            f"unknown hospital {hospital!r}: no mappings/{hospital}/source.yaml "
            f"(known: {', '.join(hospitals(settings))})"
        )
    return load_site_mapping(settings.mappings / hospital)


def stage_replay_rows(
    files: BatchFiles, origin: str, rows: set[RowKey], mapping: SiteMapping, rule: str | None
) -> set[RowKey]:
    """Re-read the rows from the origin batch's landed files and stage them under this batch.

    Writes staging Parquet, quarantine_extract and stage.json like a sync's staging step;
    returns the rows found again (a row whose file or source is gone stays quarantined).
    """
    from transforms.extract import read_landed
    from transforms.extract.landing import read_manifest
    from transforms.identity import load_pseudonym_key
    from transforms.standardize import standardize_table
    from transforms.units import load_unit_table

    settings, hospital = files.settings, files.hospital
    landing = BatchFiles(settings, hospital, origin).landing
    key = load_pseudonym_key(allow_demo=settings.demo)
    units = load_unit_table()
    specs = {s.key: s for s in mapping.sources}
    wanted: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for table, source_file, source_row in rows:
        wanted[table].add((source_file, source_row))
    frames: dict[str, list[pd.DataFrame]] = defaultdict(list)
    counts: dict[str, dict] = {}
    rejected: list[dict] = []
    found: set[RowKey] = set()
    for landed in read_manifest(landing):
        for source_key in landed.sources:
            spec = specs.get(source_key)
            if spec is None or spec.table not in wanted:
                continue
            for raw in read_landed(spec, landing / landed.name):
                source_file = raw.source_name or landed.name
                numbers = {r for f, r in wanted[spec.table] if f == source_file}
                if not numbers:
                    continue
                frame = raw.frame[raw.frame["_source_row"].isin(numbers)].reset_index(drop=True)
                bad = [r for r in raw.rejected if r.source_row in numbers]
                table_counts = counts.setdefault(
                    spec.table, {"read": 0, "staged": 0, "dropped": {}}
                )
                table_counts["read"] += len(frame) + len(bad)
                found |= {(spec.table, source_file, int(n)) for n in frame["_source_row"]}
                found |= {(spec.table, source_file, r.source_row) for r in bad}
                rejected += extract_rejections(
                    hospital, files.batch_id, spec.table, source_file, bad
                )
                if frame.empty:
                    continue
                staged = standardize_table(
                    frame,
                    spec.table,
                    mapping,
                    key=key,
                    batch_id=files.batch_id,
                    source_file=source_file,
                    units=units,
                    source_key=spec.key,
                )
                frames[spec.table].append(staged.frame)
                table_counts["staged"] += len(staged.frame)
                for reason, n in staged.dropped.items():
                    table_counts["dropped"][reason] = table_counts["dropped"].get(reason, 0) + n
    for table, parts in frames.items():
        frame = pd.concat(parts, ignore_index=True)
        write_parquet(frame, files.staging(table), arrow_schema(table))
    write_parquet(quarantine_frame(rejected), files.quarantine("extract"))
    stage = {
        "mapping_version": mapping.version,
        "tables": counts,
        "kind": "replay",
        "replay_of": origin,
        "rule": rule,
    }
    write_json(files.gov / "stage.json", stage)
    return found


def _quarantined(files: BatchFiles) -> pd.DataFrame:
    parts = [pq.read_table(files.quarantine(s)).to_pandas() for s in QUARANTINE_STAGES]
    return pd.concat(parts, ignore_index=True)


def _rule_set(frame: pd.DataFrame) -> set[tuple[str, str, int, str]]:
    return {
        (t, f, int(r), rule)
        for t, f, r, rule in zip(
            frame["table"], frame["source_file"], frame["source_row"], frame["rule_id"], strict=True
        )
    }


def release_records(
    plan: ReplayPlan, released: set[RowKey], replay_id: str, mapping_version: str
) -> pd.DataFrame:
    """One audit row per (released row, rule it was quarantined by)."""
    entries = plan.open_entries
    keep = [k in released for k in _row_keys_list(entries)]
    chosen = entries[keep]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    frame = pd.DataFrame(
        {
            "hospital": chosen["hospital"].to_numpy(),
            "table": chosen["table"].to_numpy(),
            "original_batch_id": plan.origin,
            "quarantined_in": chosen["batch_id"].to_numpy(),
            "source_file": chosen["source_file"].to_numpy(),
            "source_row": chosen["source_row"].astype("int64").to_numpy(),
            "row_hash": chosen["row_hash"].to_numpy(),
            "rule_id": chosen["rule_id"].to_numpy(),
            "released_at": now,
            "replay_batch_id": replay_id,
            "mapping_version": mapping_version,
        }
    )
    return frame.astype(RELEASE_COLUMNS) if len(frame) else empty_release()


def _row_keys_list(frame: pd.DataFrame) -> list[RowKey]:
    return [
        (t, f, int(r))
        for t, f, r in zip(frame["table"], frame["source_file"], frame["source_row"], strict=True)
    ]


def replay_batch(
    hospital: str, plan: ReplayPlan, mapping: SiteMapping, settings: Settings, rule: str | None
) -> dict:
    """Replay one original batch's planned rows as a new replay batch; counts only."""
    from pipeline import sync

    replay_id = next_replay_id(settings, hospital, plan.origin)
    files = BatchFiles(settings, hospital, replay_id)
    discard_batch(files)
    found = stage_replay_rows(files, plan.origin, plan.rows, mapping, rule)
    summary = {
        "hospital": hospital,
        "replay_of": plan.origin,
        "rows": len(plan.rows),
        "not_found": len(plan.rows - found),
    }
    sync.validate_batch(hospital, replay_id, settings)
    fhir = sync.map_batch_to_fhir(hospital, replay_id, settings)
    quarantined = _quarantined(files)
    staged = _staged_rows(files)
    released = (staged & found) - set(_row_keys_list(quarantined))
    previous = plan.open_entries[[k in found for k in _row_keys_list(plan.open_entries)]]
    if not released and _rule_set(quarantined) == _rule_set(previous):
        discard_batch(files)
        log.info("%s: replay of %s changes nothing; discarded", hospital, plan.origin)
        return summary | {
            "batch_id": None,
            "status": "nothing changed",
            "released": 0,
            "still_quarantined": len(set(_row_keys_list(quarantined))),
            "resources": 0,
        }
    write_parquet(
        release_records(plan, released, replay_id, mapping.version), files.gov / RELEASE_FILE
    )
    run = sync.reconcile_batch(hospital, replay_id, settings)
    log.info(
        "%s: replay %s released %d of %d row(s)", hospital, replay_id, len(released), len(found)
    )
    return summary | {
        "batch_id": replay_id,
        "status": run["status"],
        "released": len(released),
        "still_quarantined": len(set(_row_keys_list(quarantined))),
        "resources": sum(fhir["resources"].values()),
    }


def _staged_rows(files: BatchFiles) -> set[RowKey]:
    rows: set[RowKey] = set()
    for path in (files.settings.staging / files.hospital).glob(f"*/{files.batch_id}.parquet"):
        frame = pq.read_table(path, columns=["_source_file", "_source_row"]).to_pandas()
        rows |= {(path.parent.name, f, int(r)) for f, r in frame.itertuples(index=False)}
    return rows


def replay_quarantine(
    hospital: str,
    rule: str | None = None,
    batch: str | None = None,
    settings: Settings | None = None,
) -> dict:
    """Replay the hospital's open quarantined rows (optionally one rule glob, one batch).

    Returns counts per replay batch: rows replayed, released, still quarantined, not found.
    """
    settings = settings or load_settings()
    mapping = _load_context(hospital, settings)
    plans = plan_replay(quarantine_state(settings, hospital), rule, batch)
    replays = [replay_batch(hospital, plan, mapping, settings, rule) for plan in plans]
    return {
        "hospital": hospital,
        "rule": rule,
        "replays": replays,
        "released": sum(r["released"] for r in replays),
    }
