"""Staging: raw source rows -> one canonical table (renamed, typed, coded, pseudonymised).

Grain is kept: one staged row per accepted source row. Exact duplicate rows are dropped and
counted; values that cannot be parsed are nulled and their columns listed in `_unparsed`, so
validation quarantines the row with a reason instead of the load crashing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from transforms.biomarkers import stage_biomarker_results
from transforms.canonical import TABLES, columns_of
from transforms.dates import parse_local_datetimes, to_local_date, to_utc, unparseable_mask
from transforms.errors import MappingError
from transforms.identity import normalise_resident_id, pseudonymise, resident_id_valid, row_hashes
from transforms.linkage_keys import encode_names
from transforms.mapping import ColumnSpec, SiteMapping
from transforms.seen_rows import SeenRows
from transforms.units import UnitTable, convert_to_ucum, normalise_unit_spelling, parse_numeric

log = logging.getLogger(__name__)

# Which system of a concept map fills which canonical columns, per table.
CODE_TARGETS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "diagnosis": ("http://hl7.org/fhir/sid/icd-10", ("icd10_code", "icd10_display")),
    "lab": ("http://loinc.org", ("loinc_code", "loinc_display")),
    "treatment": (None, ("code_system", "code", "display")),
    "biomarker": ("http://loinc.org", ("loinc_code", "loinc_display")),
}


@dataclass
class StagedTable:
    frame: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)


def _blank_to_na(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "", pd.NA)


def _file_names(source_file: str | pd.Series) -> str:
    """The file name, or the names of the files whose rows a frame holds, for messages."""
    if isinstance(source_file, str):
        return source_file
    names = source_file.unique().tolist()
    if len(names) <= 3:
        return ", ".join(names)
    return f"{len(names)} files ({names[0]} to {names[-1]})"


def _check_headers(
    raw: pd.DataFrame, key: str, mapping: SiteMapping, source_file: str | pd.Series
) -> None:
    specs = mapping.tables[key].columns
    missing = [c for c, s in specs.items() if not s.drop and c not in raw.columns]
    if missing:
        found = [c for c in raw.columns if c != "_source_row"]
        raise MappingError(
            f"{mapping.hospital}/columns.yaml: {key}: column(s) {missing} not found in "
            f"{_file_names(source_file)}; its headers are {found}"
        )


def _typed(
    values: pd.Series, dtype: str, spec: ColumnSpec, tz: str
) -> tuple[pd.Series, pd.Series, pd.Series | None]:
    """Cast one column to its canonical dtype: (typed, unparseable mask, local wall time)."""
    if dtype in {"date", "timestamp"}:
        kwargs = {"formats": spec.formats} if spec.formats else {}
        local = parse_local_datetimes(values, **kwargs)
        bad = unparseable_mask(values, local)
        typed = to_local_date(local) if dtype == "date" else to_utc(local, tz)
        return typed, bad, local
    if dtype in {"float", "int"}:
        numbers = parse_numeric(values)
        bad = values.notna() & numbers.isna()
        if dtype == "int":
            fractional = numbers.notna() & (numbers % 1 != 0)
            bad = bad | fractional
            numbers = numbers.mask(fractional).astype("Int64")
        return numbers, bad, None
    return values, pd.Series(False, index=values.index), None


def _apply_codes(out: pd.DataFrame, table: str, code_map: dict) -> None:
    system, targets = CODE_TARGETS[table]
    lookup: dict[str, tuple[str, ...]] = {}
    for local, entries in code_map.items():
        chosen = [e for e in entries if system is None or e.system == system]
        if chosen:
            e = chosen[0]
            lookup[local] = (e.code, e.display) if system else (e.system, e.code, e.display)
    locals_ = out["local_code"]
    for i, column in enumerate(targets):
        mapped = {k: v[i] for k, v in lookup.items()}
        out[column] = locals_.map(mapped).astype("string")


def standardize_table(
    raw: pd.DataFrame,
    table: str,
    mapping: SiteMapping,
    *,
    key: bytes,
    batch_id: str,
    source_file: str | pd.Series,
    units: UnitTable,
    source_key: str | None = None,
    seen: SeenRows | None = None,
) -> StagedTable:
    """Map one raw export (strings under source headers + `_source_row`) to canonical `table`.

    `source_file` is the rows' lineage name: one for the frame, or one per row (aligned to
    `raw`'s index) when the frame joins several small files of one source.

    `source_key` names the source's entry in columns.yaml (default: the table name). Exact
    duplicates are dropped within `raw`; pass the same `seen` (row hashes staged so far,
    updated here) for every chunk of every file of the source in one batch, so duplicates are
    dropped across all of them.
    """
    key_name = source_key or table
    _check_headers(raw, key_name, mapping, source_file)
    specs = mapping.tables[key_name].columns
    source_cols = [c for c in raw.columns if c != "_source_row"]
    hashes = row_hashes(raw[source_cols], key, salt=f"{mapping.hospital}|{key_name}")
    duplicate = _duplicates(hashes, seen)
    dropped = {"duplicate_row": int(duplicate.sum())} if duplicate.any() else {}
    raw, hashes = raw.loc[~duplicate], hashes.loc[~duplicate]
    if seen is not None:
        seen.add(hashes.tolist())

    dtypes = {c.name: c.dtype for c in TABLES[table]}
    out = pd.DataFrame(index=raw.index)
    unparsed: dict[str, pd.Series] = {}
    for source_col, spec in specs.items():
        if spec.drop or spec.to is None:
            continue
        values = _blank_to_na(raw[source_col])
        target = spec.to
        if target == "mrn":
            out["patient_key"] = pseudonymise(values, key, f"mrn:{mapping.hospital}")
        elif target == "resident_id":
            normalised = normalise_resident_id(values)
            valid = resident_id_valid(normalised)
            out["resident_id_valid"] = valid
            out["person_key"] = pseudonymise(normalised.where(valid.fillna(False)), key, "person")
        elif target == "name":  # never staged: only keyed encodings, for cross-site linkage
            for column, encoded in encode_names(values, key).items():
                out[column] = encoded
        else:
            if spec.values:
                vmap = mapping.value_maps[spec.values]
                mapped = values.map(vmap).astype("string")
                unparsed[target] = values.notna() & mapped.isna()
                values = mapped
            typed, bad, local = _typed(values, dtypes[target], spec, mapping.timezone)
            out[target] = typed
            unparsed[target] = unparsed[target] | bad if target in unparsed else bad
            date_col = target.removesuffix("_at") + "_date"
            if dtypes[target] == "timestamp" and date_col in dtypes and local is not None:
                out[date_col] = to_local_date(local)  # keep the local calendar date beside UTC
    for target, value in mapping.constants.get(key_name, {}).items():  # columns.yaml constants
        out[target] = pd.Series(value, index=raw.index, dtype="string")

    if table in CODE_TARGETS and "local_code" in out:
        _apply_codes(out, table, mapping.code_maps.get(_codes_name(specs), {}))
    if table == "lab":
        reported = out.get("source_unit", pd.Series(pd.NA, index=out.index, dtype="string"))
        units_text = normalise_unit_spelling(reported.fillna(""))
        value, unit = convert_to_ucum(out["source_value"], units_text, out["loinc_code"], units)
        out["value"], out["unit"] = value, unit
    if table == "biomarker":
        columns, marker_flags = stage_biomarker_results(out, raw, specs, mapping.value_maps)
        for column, values in columns.items():
            out[column] = values
        unparsed.update(marker_flags)

    flags = pd.DataFrame(unparsed, index=raw.index)
    if flags.empty or not len(flags.columns):
        out["_unparsed"] = pd.Series(pd.NA, index=raw.index, dtype="string")
    else:
        joined = flags.apply(lambda col: col.map({True: col.name + ",", False: ""})).sum(axis=1)
        out["_unparsed"] = joined.str.rstrip(",").replace("", pd.NA).astype("string")
    out["_hospital"] = mapping.hospital
    out["_batch_id"] = batch_id
    out["_source_file"] = source_file
    out["_source_row"] = raw["_source_row"].astype("int64")
    out["_source_key"] = _source_keys(raw, mapping, key_name, key)
    out["_row_hash"] = hashes
    frame = conform(out, table)
    log.info(
        "%s/%s: staged %d row(s) from %s, dropped %s",
        mapping.hospital,
        table,
        len(frame),
        _file_names(source_file),
        dropped or "none",
    )
    return StagedTable(frame.reset_index(drop=True), dropped)


def _duplicates(hashes: pd.Series, seen: SeenRows | None) -> pd.Series:
    """Rows repeating an earlier row: earlier in `hashes`, or already in `seen`."""
    duplicate = hashes.duplicated(keep="first")
    if seen:
        duplicate |= pd.Series(seen.contains(hashes.tolist()), index=hashes.index)
    return duplicate


def source_key_hashes(values: pd.Series, key: bytes, hospital: str, source: str) -> pd.Series:
    """`_source_key`: HMAC of the source's primary key, namespaced `<hospital>|<source>`.

    Deletions in the source system name rows by primary key; this hash finds them again.
    """
    return pseudonymise(_blank_to_na(values), key, f"{hospital}|{source}")


def _source_keys(raw: pd.DataFrame, mapping: SiteMapping, source: str, key: bytes) -> pd.Series:
    spec = next((s for s in mapping.sources if s.key == source), None)
    column = getattr(spec, "key_column", None)
    if column is None or column not in raw:
        return pd.Series(pd.NA, index=raw.index, dtype="string")
    return source_key_hashes(raw[column], key, mapping.hospital, source)


def _codes_name(specs: dict[str, ColumnSpec]) -> str:
    return next((s.codes for s in specs.values() if s.to == "local_code" and s.codes), "")


_PANDAS_DTYPES = {
    "string": "string",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
}


def conform(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Exactly the canonical columns, in order, with canonical dtypes (null where absent)."""
    out = {}
    for col in columns_of(table):
        values = frame[col.name] if col.name in frame else pd.Series(pd.NA, index=frame.index)
        if col.dtype == "date":
            values = pd.to_datetime(values).astype("datetime64[ms]")
        elif col.dtype == "timestamp":
            values = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        elif col.name == "_source_row":
            values = values.astype("int64")
        else:
            values = values.astype(_PANDAS_DTYPES[col.dtype])
        out[col.name] = values
    return pd.DataFrame(out, index=frame.index)
