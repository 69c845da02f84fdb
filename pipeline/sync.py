"""One hospital's nightly sync, as stages the CLI and the Airflow DAG both call.

land -> stage -> validate -> map to FHIR -> reconcile. Each stage reads the previous layer
and overwrites only its own files for the batch, so any stage can be rerun safely. Every
function returns a small dict of counts (no PHI), fit for XCom and the terminal.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.batch_cache import newest_per_key
from pipeline.batch_files import (
    BatchFiles,
    NdjsonAppender,
    ParquetAppender,
    extract_rejections,
    quarantine_frame,
    read_json,
    write_json,
    write_parquet,
)
from pipeline.settings import Settings, load_settings
from transforms.canonical import TABLES, arrow_schema
from transforms.errors import ReconciliationError, ValidationFailed
from transforms.extract import read_landed
from transforms.extract.landing import land_files, landed_batches, read_manifest
from transforms.identity import load_pseudonym_key
from transforms.mapping import FILE_KINDS, SiteMapping, load_site_mapping
from transforms.processes import release_free_memory
from transforms.seen_rows import SeenRows
from transforms.standardize import conform, standardize_table
from transforms.units import load_unit_table

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from expectations.outcome import CheckResult
    from transforms.extract.raw import RawTable
    from transforms.mapping import SourceSpec
    from transforms.units import UnitTable

log = logging.getLogger(__name__)

# Rows per chunk handed to the FHIR mapping (at most WALNUT_CHUNK_ROWS): the mapping holds a
# chunk's resources twice (in the workers, then encoded here), ~10x the staged rows' size, so
# its chunks are smaller than staging's. At ~1M rows, 50k-row chunks made its processes peak
# at ~630 MB, 20k-row ones at ~500 MB; the workers outlive the chunks (`mapping_pool`).
MAP_CHUNK_ROWS = 20_000


def hospital_run_date(hospital: str, settings: Settings | None = None) -> dt.date:
    """Today in the hospital's time zone: the date its suites' date checks are judged on."""
    return _run_date(_context(hospital, settings)[1])


def _run_date(mapping: SiteMapping) -> dt.date:
    return dt.datetime.now(ZoneInfo(mapping.timezone)).date()


def _context(hospital: str, settings: Settings | None) -> tuple[Settings, SiteMapping]:
    settings = settings or load_settings()
    folder = settings.mappings / hospital
    if not (folder / "source.yaml").is_file():
        from transforms.errors import ConfigError

        raise ConfigError(
            f"unknown hospital {hospital!r}: no mappings/{hospital}/source.yaml "
            f"(known: {', '.join(sorted(p.name for p in settings.mappings.glob('[!_]*')))})"
        )
    return settings, load_site_mapping(folder)


def _finished(files: BatchFiles) -> bool:
    path = files.gov / "load_run.json"
    return path.is_file() and read_json(path).get("status") == "success"


def land_sources(hospital: str, settings: Settings | None = None) -> str | None:
    """Land new files as a batch; returns that batch id, an unfinished earlier batch, or None."""
    settings, mapping = _context(hospital, settings)
    landing = settings.landing / hospital
    for batch_id in landed_batches(landing):
        if not _finished(BatchFiles(settings, hospital, batch_id)):
            log.info("%s: resuming unfinished batch %s", hospital, batch_id)
            return batch_id
    lander = None
    if any(s.kind == "sql" for s in mapping.sources):
        from transforms.extract.sql import land_sql_sources

        lander = partial(land_sql_sources, source_dir=settings.source_dir(hospital))
    return land_files(mapping, settings.source_dir(hospital), landing, land_database=lander)


def stage_batch(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """Read every landed file of the batch into canonical staging Parquet, one file per table.

    Files are read and standardised in chunks of `settings.chunk_rows` rows, each appended to
    its table's Parquet as it comes, so memory does not grow with the batch. A row repeating
    an earlier row of the same source in this batch (in the same file, or in another file of
    it, such as a re-sent export landing beside its newer copy) is dropped as `duplicate_row`.
    """
    settings, mapping = _context(hospital, settings)
    files = BatchFiles(settings, hospital, batch_id)
    key = load_pseudonym_key(allow_demo=settings.demo)
    staging = _Staging(files, mapping, key, load_unit_table())
    specs = {s.key: s for s in mapping.sources}
    seen: dict[str, SeenRows] = {}  # row hashes staged per source, across chunks and files
    try:
        for landed in read_manifest(files.landing):
            for source_key in landed.sources:
                spec = specs[source_key]
                for raw in read_landed(spec, files.landing / landed.name, settings.chunk_rows):
                    staging.add(spec, raw, landed.name, seen.setdefault(source_key, SeenRows()))
                    del raw  # not held while the reader builds the next chunk
    except BaseException:
        staging.discard()
        raise
    staging.close()
    write_parquet(quarantine_frame(staging.rejected), files.quarantine("extract"))
    counts = staging.counts
    write_json(files.gov / "stage.json", {"mapping_version": mapping.version, "tables": counts})
    return {
        "hospital": hospital,
        "batch_id": batch_id,
        "staged": {t: c["staged"] for t, c in counts.items()},
        "rejected_at_extract": len(staging.rejected),
    }


# Raw cells (rows x columns) joined into one standardise call at most; a single larger chunk
# still goes alone. An HL7 row has ~150 columns: joining 50,000 of them held ~160 MB more than
# per-file calls (south_general's staging at ~1M rows peaked at 601 instead of 439 MB); at
# 1M cells it peaks at 434 MB, as fast.
JOIN_CELLS = 1_000_000


@dataclass
class _Staging:
    """A batch being staged: one Parquet writer per table, counts and extract rejections.

    Small chunks of one source in a row (an HL7 feed lands one file per day, a few hundred
    rows each) are standardised together, up to `chunk_rows` rows or JOIN_CELLS cells:
    standardising costs ~30 ms a call whatever its rows, most of south_general's staging at ~1M
    rows when paid per file. Rows, their order and their lineage (`_source_file` per row) are
    the same either way.
    """

    files: BatchFiles
    mapping: SiteMapping
    key: bytes
    units: UnitTable
    writers: dict[str, ParquetAppender] = field(default_factory=dict)
    counts: dict[str, dict] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    pending: list[tuple[pd.DataFrame, str]] = field(default_factory=list)
    pending_source: tuple[SourceSpec, SeenRows] | None = None

    def add(self, spec: SourceSpec, raw: RawTable, landed_name: str, seen: SeenRows) -> None:
        """Take one raw chunk; standardised and appended once `chunk_rows` rows or JOIN_CELLS
        cells are pending."""
        files, table = self.files, spec.table
        source_file = raw.source_name or landed_name
        counts = self.counts.setdefault(table, {"read": 0, "staged": 0, "dropped": {}})
        counts["read"] += raw.rows_read
        log.info(
            "%s: %s read %d row(s) (%s)", files.hospital, source_file, raw.rows_read, raw.encoding
        )
        self.rejected += extract_rejections(
            files.hospital, files.batch_id, table, source_file, raw.rejected
        )
        limit = files.settings.chunk_rows
        frames = [frame for frame, _ in self.pending]
        rows, cells = sum(len(f) for f in frames), sum(f.size for f in frames)
        if self.pending and (
            self.pending_source[0].key != spec.key
            or not raw.frame.columns.equals(self.pending[0][0].columns)
            # joined, they would pass the bounds: a reader's chunk one row short of them
            # (a rejected row) made the next full chunk double the frame standardised at once
            or rows + len(raw.frame) > limit
            or cells + raw.frame.size > JOIN_CELLS
        ):
            self.flush()
            rows = cells = 0
        self.pending.append((raw.frame, source_file))
        self.pending_source = (spec, seen)
        if rows + len(raw.frame) >= limit or cells + raw.frame.size >= JOIN_CELLS:
            self.flush()

    def flush(self) -> None:
        """Standardise the pending chunks as one frame and append it to its table's file."""
        if not self.pending:
            return
        spec, seen = self.pending_source
        table = spec.table
        frames = [frame for frame, _ in self.pending]
        names = [name for _, name in self.pending]
        if len(frames) == 1:
            raw, source_file = frames[0], names[0]
        else:
            raw = pd.concat(frames, ignore_index=True)
            source_file = pd.Series(
                np.repeat(names, [len(f) for f in frames]), index=raw.index, dtype="string"
            )
        self.pending, self.pending_source = [], None
        staged = standardize_table(
            raw,
            table,
            self.mapping,
            key=self.key,
            batch_id=self.files.batch_id,
            source_file=source_file,
            units=self.units,
            source_key=spec.key,
            seen=seen,
        )
        if table not in self.writers:
            self.writers[table] = ParquetAppender(
                self.files.staging(table), arrow_schema(table), self.files.settings.chunk_rows
            )
        self.writers[table].append(staged.frame)
        counts = self.counts[table]
        counts["staged"] += len(staged.frame)
        for reason, n in staged.dropped.items():
            counts["dropped"][reason] = counts["dropped"].get(reason, 0) + n
        # What the chunk freed goes back to the OS: kept by Arrow's pool and malloc, it raised
        # the process's RSS with every chunk (south_general at ~1M rows: peak 436 -> 381 MB).
        release_free_memory()

    def close(self) -> None:
        self.flush()
        for writer in self.writers.values():
            writer.close()

    def discard(self) -> None:
        self.pending, self.pending_source = [], None
        for writer in self.writers.values():
            writer.discard()


def _staged_tables(files: BatchFiles) -> list[str]:
    return [t for t in TABLES if files.staging(t).is_file()]


def iter_staging(files: BatchFiles, table: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The table's staged rows in order, in frames of at most `chunk_rows` (at least one)."""
    with pq.ParquetFile(files.staging(table)) as parquet:
        schema = parquet.schema_arrow
        empty = True
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            empty = False
            yield conform(pa.Table.from_batches([batch], schema).to_pandas(), table)
        if empty:
            yield conform(schema.empty_table().to_pandas(), table)


def _payload(frame: pd.DataFrame) -> pd.Series:
    """Pseudonymised staged rows as JSON, kept in quarantine so a row can be replayed."""
    records = frame.drop(columns=["_row_hash"]).astype(object).where(frame.notna(), None)
    return pd.Series(
        [orjson.dumps(r, default=str).decode() for r in records.to_dict("records")],
        index=frame.index,
    )


# Patient columns the cross-table checks need (dates for event order), plus the row hash.
_PATIENT_COLUMNS = ["patient_key", "birth_date", "death_date", "_row_hash"]
_KNOWN_COLUMNS = _PATIENT_COLUMNS[:3]
# Per hospital, beside its staging tables: the known patients of its finished batches.
KNOWN_PATIENTS = "_known_patients.parquet"


def _known_patients(
    files: BatchFiles, this_batch: pd.DataFrame | None, bad: set[str]
) -> pd.DataFrame:
    """Patients loaded by any finished batch of the hospital plus this batch's good ones: one
    row per patient_key with birth and death dates (the newest batch's values).

    The finished batches' part comes from a cache (`pipeline.batch_cache`): reading every
    batch's patient file and quarantine again cost 1.6–3 s per hospital and sync after a year
    of nightlies.
    """
    folder = files.settings.staging / files.hospital
    finished = [
        path.stem
        for path in sorted((folder / "patient").glob("*.parquet"))
        if path.stem != files.batch_id
        and _finished(BatchFiles(files.settings, files.hospital, path.stem))
    ]
    parts = [
        newest_per_key(
            folder / KNOWN_PATIENTS,
            finished,
            partial(_good_patients, files),
            "patient_key",
            _KNOWN_COLUMNS,
        )
    ]
    if this_batch is not None:
        parts.append(this_batch.loc[~this_batch["_row_hash"].isin(bad), _KNOWN_COLUMNS])
    known = pd.concat([conform_dates(part) for part in parts], ignore_index=True)
    return known.dropna(subset=["patient_key"]).drop_duplicates("patient_key", keep="last")


def _good_patients(files: BatchFiles, batch_id: str) -> pd.DataFrame:
    """A finished batch's staged patient rows that validation did not quarantine."""
    batch = BatchFiles(files.settings, files.hospital, batch_id)
    frame = pq.read_table(batch.staging("patient"), columns=_PATIENT_COLUMNS).to_pandas()
    return frame[~frame["_row_hash"].isin(_quarantined_hashes(batch, "validate"))]


def conform_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Birth/death dates as datetime64 whatever Parquet returned (date objects or datetimes)."""
    frame = frame.copy()
    for column in ("birth_date", "death_date"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ms]")
    return frame


def validate_batch(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """Run each table's suite on every chunk; failing rows go to quarantine, results to dq_result.

    Tables are read in chunks of `settings.chunk_rows` rows and each check's counts summed over
    them (one dq_result row per check and table). Row-hash uniqueness is checked on the whole
    table. Patients come first: their good rows are the known patients other tables check.
    """
    settings, mapping = _context(hospital, settings)
    files = BatchFiles(settings, hospital, batch_id)
    run_date = _run_date(mapping)
    run_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results: list[dict] = []
    quarantined: list[dict] = []
    critical: list[str] = []
    summary: dict[str, int] = {}
    patients: list[pd.DataFrame] = []
    patient_bad: set[str] = set()
    known: pd.DataFrame | None = None
    for table in _staged_tables(files):  # canonical order: patient first
        if table != "patient" and known is None:
            this_batch = pd.concat(patients, ignore_index=True) if patients else None
            known = _known_patients(files, this_batch, patient_bad)
        checked = _validate_table(files, table, run_date, known)
        if table == "patient":
            patients, patient_bad = checked.patients, checked.bad
        explanations = {r.check_id: r.explanation for r in checked.checks}
        results += [_dq_row(hospital, batch_id, table, r, run_at) for r in checked.checks]
        critical += [f"{table}: {c.check_id} ({c.explanation})" for c in checked.critical]
        for entry in checked.quarantined:
            quarantined.append(
                {
                    "hospital": hospital,
                    "batch_id": batch_id,
                    "table": table,
                    **entry,
                    "stage": "validate",
                    "reason": explanations.get(entry["rule_id"], entry["rule_id"]),
                }
            )
        summary[table] = checked.failed_rows
    write_parquet(pd.DataFrame(results), files.gov / "dq_result.parquet")
    write_parquet(quarantine_frame(quarantined), files.quarantine("validate"))
    if critical:
        raise ValidationFailed(
            f"{hospital} batch {batch_id}: critical check(s) failed: " + "; ".join(critical)
        )
    return {"hospital": hospital, "batch_id": batch_id, "quarantined_rows": summary}


@dataclass
class _TableChecks:
    """One table's validation over all its chunks: merged check results and failing rows."""

    checks: list[CheckResult] = field(default_factory=list)
    critical: list[CheckResult] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)  # without batch-level fields
    failed_rows: int = 0
    bad: set[str] = field(default_factory=set)  # row hashes failing a quarantine check
    patients: list[pd.DataFrame] = field(default_factory=list)  # patient table only


def _validate_table(
    files: BatchFiles, table: str, run_date: dt.date, known: pd.DataFrame | None
) -> _TableChecks:
    """Validate a staged table chunk by chunk (`known` patients for the cross-table checks)."""
    from expectations.referential import check_event_dates, check_patient_known
    from expectations.runner import validate_frame

    out = _TableChecks()
    suite: list[list[CheckResult]] = []
    cross: list[list[CheckResult]] = []
    hashes: list[pa.Array] = []  # every chunk's row hashes, for uniqueness over the table
    known_keys = set(known["patient_key"]) if known is not None else set()
    for number, frame in enumerate(iter_staging(files, table, files.settings.chunk_rows)):
        if number:
            _free_chunk()
        outcome = validate_frame(table, frame, run_date=run_date)
        suite.append(list(outcome.results))
        hashes.append(pa.array(frame["_row_hash"].dropna(), pa.large_string()))
        failed_rows = {h: list(ids) for h, ids in outcome.failed_rows.items()}
        if table != "patient":
            cross_table = [check_patient_known(table, frame, known_keys)]
            cross_table += check_event_dates(table, frame, known)
            cross.append([result for result, _ in cross_table])
            for result, failing in cross_table:
                for row_hash in failing:
                    failed_rows.setdefault(row_hash, []).append(result.check_id)
        else:
            out.patients.append(frame[_PATIENT_COLUMNS])
        out.bad.update(outcome.failed_rows)
        failed = frame[frame["_row_hash"].isin(failed_rows)]
        out.quarantined += _quarantine_entries(failed, failed_rows)
        out.failed_rows += len(failed)
        del frame, failed, outcome  # not held while the next chunk is read
    merged = [_merge_results(chunks) for chunks in zip(*suite, strict=True)]
    duplicated = _duplicated_rows(hashes)
    merged = [_whole_table_unique(table, r, duplicated) for r in merged]
    out.critical = [r for r in merged if r.fails_run]
    out.checks = merged + [_merge_results(chunks) for chunks in zip(*cross, strict=True)]
    return out


def _free_chunk() -> None:
    """Free what the previous chunk left behind before the next one is validated.

    GX leaves reference cycles around a chunk's frames, which Python's full collection (rare
    in a process holding GX) would free only much later; Arrow's allocator keeps freed pages
    for itself unless asked. Costs ~0.2 s, paid only between chunks.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()


def _quarantine_entries(failed: pd.DataFrame, failed_rows: dict[str, list[str]]) -> list[dict]:
    """One entry per failing row and check, in row order, with the row's replayable payload."""
    payloads = _payload(failed)
    entries = []
    for idx, row in failed.iterrows():
        for check_id in failed_rows[row["_row_hash"]]:
            entries.append(
                {
                    "source_file": row["_source_file"],
                    "source_row": int(row["_source_row"]),
                    "row_hash": row["_row_hash"],
                    "rule_id": check_id,
                    "payload": payloads[idx],
                }
            )
    return entries


def _merge_results(chunks: tuple[CheckResult, ...]) -> CheckResult:
    """One check's result over all chunks: counts summed, success only if every chunk passed."""
    first = chunks[0]
    if any(c.check_id != first.check_id for c in chunks):
        raise RuntimeError(f"{first.table}: checks differ between chunks")
    return replace(
        first,
        evaluated=sum(c.evaluated for c in chunks),
        failed=sum(c.failed for c in chunks),
        success=all(c.success for c in chunks),
        errored=any(c.errored for c in chunks),
    )


def _duplicated_rows(hashes: list[pa.Array]) -> int:
    """Rows whose (non-null) row hash occurs more than once in the table, as GX counts them.

    Once sorted, equal hashes are neighbours: a row is duplicated when it equals the row before
    or after it (half the memory of counting values in a hash table).
    """
    values = pa.chunked_array(hashes, pa.large_string())
    ordered = values.take(pc.sort_indices(values))
    same = pc.equal(ordered[1:], ordered[:-1]).to_numpy()
    del ordered
    duplicated = np.zeros(len(values), dtype=bool)
    duplicated[1:] |= same
    duplicated[:-1] |= same
    pa.default_memory_pool().release_unused()
    return int(duplicated.sum())


def _whole_table_unique(table: str, result: CheckResult, duplicated: int) -> CheckResult:
    """`<table>.row_hash_unique` judged on the whole table (`duplicated` rows), not per chunk."""
    if result.check_id != f"{table}.row_hash_unique" or result.errored:
        return result
    return replace(result, failed=duplicated, success=duplicated == 0)


def _dq_row(hospital: str, batch_id: str, table: str, r: CheckResult, run_at: str) -> dict:
    return {
        "hospital": hospital,
        "batch_id": batch_id,
        "table": table,
        "check_id": r.check_id,
        "category": r.category,
        "severity": r.severity,
        "evaluated": r.evaluated,
        "failed": r.failed,
        "pass_rate": 1.0 if r.evaluated == 0 else 1 - r.failed / r.evaluated,
        "success": r.success,
        "explanation": r.explanation,
        "run_at": run_at,
    }


def _quarantined_hashes(files: BatchFiles, stage: str) -> set[str]:
    path = files.quarantine(stage)
    if not path.is_file():
        return set()
    return set(pq.read_table(path, columns=["row_hash"]).column(0).drop_null().to_pylist())


def map_batch_to_fhir(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """Map rows that passed validation to FHIR R4 NDJSON, one file per resource type.

    Tables are mapped in chunks of `settings.chunk_rows` rows and each chunk's NDJSON appended
    to its type's file, so no more than a chunk's resources are held; files replace the
    batch's previous ones only once every table is mapped.
    """
    settings, _ = _context(hospital, settings)
    files = BatchFiles(settings, hospital, batch_id)
    bad = _quarantined_hashes(files, "validate")
    counts: Counter[str] = Counter()
    errors: list[dict] = []
    loaded: dict[str, int] = {}
    ndjson = NdjsonAppender(files.fhir)
    from transforms.fhir.mapper import mapping_pool

    try:
        with mapping_pool() as pool:
            for table in _staged_tables(files):
                loaded[table] = 0
                for frame in iter_staging(files, table, min(settings.chunk_rows, MAP_CHUNK_ROWS)):
                    frame = frame[~frame["_row_hash"].isin(bad)].reset_index(drop=True)
                    loaded[table] += _map_chunk(files, table, frame, ndjson, counts, errors, pool)
                    del frame  # not held while the next chunk is read
    except BaseException:
        ndjson.discard()
        raise
    ndjson.close()
    counts = dict(counts)
    write_parquet(quarantine_frame(errors), files.quarantine("fhir"))
    write_json(files.gov / "fhir.json", {"loaded": loaded, "resources": counts})
    return {"hospital": hospital, "batch_id": batch_id, "resources": counts}


def _map_chunk(
    files: BatchFiles,
    table: str,
    frame: pd.DataFrame,
    ndjson: NdjsonAppender,
    counts: Counter[str],
    errors: list[dict],
    pool: ProcessPoolExecutor | None,
) -> int:
    """Map one chunk: NDJSON appended, resources counted, failing rows added to `errors`.

    Returns the chunk's rows loaded (rows that mapped without error).
    """
    from transforms.fhir.mapper import map_table_ndjson

    result = map_table_ndjson(table, frame, files.hospital, pool=pool)
    for rtype, parts in result.ndjson.items():
        ndjson.write(rtype, parts)
        counts[rtype] += result.counts[rtype]
    failed = {h for h, _ in result.errors}
    rows = frame.set_index("_row_hash")
    for row_hash, reason in result.errors:
        errors.append(
            {
                "hospital": files.hospital,
                "batch_id": files.batch_id,
                "table": table,
                "source_file": rows.at[row_hash, "_source_file"],
                "source_row": int(rows.at[row_hash, "_source_row"]),
                "row_hash": row_hash,
                "stage": "fhir",
                "rule_id": "fhir.valid_resource",
                "reason": reason,
                "payload": None,
            }
        )
    return len(frame) - len(failed)


def _deleted_counts(files: BatchFiles) -> dict[str, int]:
    path = files.gov / "deletions.json"
    return read_json(path)["deleted"] if path.is_file() else {}


# The part after the last colon of a "source" string in compact JSON (orjson escapes neither
# ':' nor the hex of a row hash), a superset of the meta.source row hashes of the line.
_SOURCE_TAIL = re.compile(rb'"source":"[^"]*:([^":]*)"')


def _tombstones(files: BatchFiles, targets: dict[str, str]) -> list[dict[str, str]]:
    """Tombstone lines for resources of earlier batches whose meta.source names a target row.

    Every earlier resource of the hospital is a candidate, so lines are screened as text first
    (the last `:`-part of any "source" string) and only possible hits are parsed and checked.
    """
    if not targets:
        return []
    wanted = {row_hash.encode() for row_hash in targets}
    found: dict[tuple[str, str], dict[str, str]] = {}
    root = files.settings.fhir / files.hospital
    for path in sorted(root.glob("*/[!_]*.ndjson")):
        if path.parent.name >= files.batch_id:
            continue
        with path.open("rb") as handle:
            for line in handle:
                if wanted.isdisjoint(_SOURCE_TAIL.findall(line)):
                    continue
                resource = orjson.loads(line)
                row_hash = resource.get("meta", {}).get("source", "").rsplit(":", 1)[-1]
                if row_hash in targets:
                    found[(resource["resourceType"], resource["id"])] = {
                        "resourceType": resource["resourceType"],
                        "id": resource["id"],
                        "deleted_at": targets[row_hash],
                    }
    return list(found.values())


def apply_deletions(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """Tombstone the FHIR resources of source rows the HIS deleted (tombstones in this batch).

    Deleted primary key -> `_source_key` -> rows staged by earlier batches -> their `_row_hash`
    -> resources of earlier batches with that hash in meta.source. Writes
    fhir/<hospital>/<batch>/_tombstones.ndjson (read by the warehouse build) and
    gov/.../deletions.json (deleted source rows per table, counted apart from rows read).
    """
    from transforms.extract.sql import read_deletions
    from transforms.standardize import source_key_hashes

    settings, mapping = _context(hospital, settings)
    files = BatchFiles(settings, hospital, batch_id)
    deletions = read_deletions(files.landing)
    specs = {getattr(s, "source_table", None): s for s in mapping.sources if s.kind == "sql"}
    key = load_pseudonym_key(allow_demo=settings.demo) if len(deletions) else b""
    deleted: Counter[str] = Counter()
    targets: dict[str, str] = {}  # row hash of a deleted row -> deleted_at
    for table_name, rows in deletions.groupby("table_name"):
        spec = specs.get(table_name)
        if spec is None:
            continue
        deleted[spec.table] += len(rows)
        hashed = source_key_hashes(rows["row_key"], key, hospital, spec.key)
        when = dict(zip(hashed, rows["deleted_at"], strict=True))
        for path in sorted((settings.staging / hospital / spec.table).glob("*.parquet")):
            if path.stem >= batch_id:
                continue
            staged = pq.read_table(path, columns=["_source_key", "_row_hash"]).to_pandas()
            hit = staged[staged["_source_key"].isin(list(when))]
            targets.update(zip(hit["_row_hash"], hit["_source_key"].map(when), strict=True))
    tombstones = _tombstones(files, targets)
    path = files.fhir / "_tombstones.ndjson"
    path.unlink(missing_ok=True)
    if tombstones:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in tombstones))
    write_json(
        files.gov / "deletions.json",
        {"deleted": dict(deleted), "rows_found": len(targets), "tombstones": len(tombstones)},
    )
    log.info(
        "%s: batch %s deletes %d source row(s), %d resource(s)",
        hospital,
        batch_id,
        sum(deleted.values()),
        len(tombstones),
    )
    return {
        "hospital": hospital,
        "batch_id": batch_id,
        "deleted": dict(deleted),
        "tombstones": len(tombstones),
    }


def reconcile_batch(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """Check rows read = loaded + quarantined + dropped per table; record the load run."""
    settings, mapping = _context(hospital, settings)
    files = BatchFiles(settings, hospital, batch_id)
    stage = read_json(files.gov / "stage.json")
    fhir = read_json(files.gov / "fhir.json")
    quarantine = pd.concat(
        [pq.read_table(files.quarantine(s)).to_pandas() for s in ("extract", "validate", "fhir")],
        ignore_index=True,
    )
    per_table = Counter(
        quarantine.drop_duplicates(["table", "source_file", "source_row"])["table"].tolist()
    )
    rows, unbalanced = [], []
    deleted = _deleted_counts(files)
    empty = {"read": 0, "staged": 0, "dropped": {}}
    tables = stage["tables"] | {t: empty for t in deleted if t not in stage["tables"]}
    for table, counts in tables.items():
        dropped = sum(counts["dropped"].values())
        loaded = fhir["loaded"].get(table, 0)
        q = per_table.get(table, 0)
        balanced = counts["read"] == loaded + q + dropped
        rows.append(
            {
                "hospital": hospital,
                "batch_id": batch_id,
                "table": table,
                "read": counts["read"],
                "staged": counts["staged"],
                "quarantined": q,
                "dropped": dropped,
                "dropped_by_reason": orjson.dumps(counts["dropped"]).decode(),
                "loaded": loaded,
                "deleted": deleted.get(table, 0),
                "balanced": balanced,
            }
        )
        if not balanced:
            unbalanced.append(
                f"{table}: read {counts['read']} != loaded {loaded} + quarantined {q} "
                f"+ dropped {dropped}"
            )
    write_parquet(pd.DataFrame(rows), files.gov / "reconciliation.parquet")
    status = "failed" if unbalanced else "success"
    run = {
        "hospital": hospital,
        "batch_id": batch_id,
        "status": status,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mapping_version": stage["mapping_version"],
        "kind": stage.get("kind", "sync"),  # "replay": pipeline/replay.py re-staged quarantine
        "replay_of": stage.get("replay_of"),
        "read": sum(r["read"] for r in rows),
        "loaded": sum(r["loaded"] for r in rows),
        "quarantined": sum(r["quarantined"] for r in rows),
        "dropped": sum(r["dropped"] for r in rows),
        "deleted": sum(r["deleted"] for r in rows),
        "resources": sum(fhir["resources"].values()),
    }
    write_json(files.gov / "load_run.json", run)
    if unbalanced:
        raise ReconciliationError(
            f"{hospital} batch {batch_id} does not balance: " + "; ".join(unbalanced)
        )
    return run


# The stages after landing, in order, with the label the CLI shows; the CLI, sync_hospital
# and the Airflow DAG all run exactly this list. Staging comes first: land_and_stage runs it,
# finish_batch the rest.
BATCH_STAGES: tuple[tuple[str, Callable[..., dict]], ...] = (
    ("staging", stage_batch),
    ("validating", validate_batch),
    ("mapping to FHIR", map_batch_to_fhir),
    ("applying deletions", apply_deletions),
    ("reconciling", reconcile_batch),
)


def has_sources(hospital: str, settings: Settings | None = None) -> bool:
    """False when a file-fed hospital has no source folder here (e.g. an unconfigured intake)."""
    settings, mapping = _context(hospital, settings)
    if any(spec.kind not in FILE_KINDS for spec in mapping.sources):
        return True
    return settings.source_dir(hospital).is_dir()


def land_and_stage(hospital: str, settings: Settings | None = None) -> str | None:
    """Land the hospital's new files and stage them: the batch id, or None if nothing is new.

    Needs neither GX nor the FHIR models, so `sync --all` runs it while it imports them.
    """
    settings = settings or load_settings()
    batch_id = land_sources(hospital, settings)
    if batch_id is not None:
        stage_batch(hospital, batch_id, settings)
    return batch_id


def finish_batch(hospital: str, batch_id: str, settings: Settings | None = None) -> dict:
    """The stages after staging (BATCH_STAGES[1:]) for a staged batch; returns its load run."""
    settings = settings or load_settings()
    result: dict = {}
    for _, stage in BATCH_STAGES[1:]:
        result = stage(hospital, batch_id, settings)
    return result


def nothing_new(hospital: str) -> dict:
    """The load run of a sync that found no new files."""
    return {"hospital": hospital, "batch_id": None, "status": "nothing new"}


def sync_hospital(hospital: str, settings: Settings | None = None) -> dict:
    """Run every stage for the hospital's new files; returns the load run (or a no-op note)."""
    settings = settings or load_settings()
    batch_id = land_and_stage(hospital, settings)
    if batch_id is None:
        return nothing_new(hospital)
    return finish_batch(hospital, batch_id, settings)
