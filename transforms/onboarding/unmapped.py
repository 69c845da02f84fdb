"""Local codes the concept maps do not cover yet, counted from staging, for a terminologist.

Grain: one row per hospital table x source x local code. Holds codes, counts and batch ids
only (no patient keys, no values), so the CSV can leave the hospital to be filled in.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from transforms.extract.landing import read_manifest
from transforms.mapping import ExcelSource, SiteMapping

log = logging.getLogger(__name__)

# The standard code each coded staging table fills from its concept map.
STANDARD_CODE = {
    "diagnosis": "icd10_code",
    "lab": "loinc_code",
    "treatment": "code",
    "biomarker": "loinc_code",
}
UNMAPPED_COLUMNS = ("table", "source", "local_code", "rows", "first_batch", "last_batch")


def _source_names(mapping: SiteMapping, landing: Path, batch_id: str) -> dict[str, str]:
    """Lineage file name (`_source_file`) -> source key, from the batch's landing manifest."""
    specs = {s.key: s for s in mapping.sources}
    names: dict[str, str] = {}
    manifest = landing / batch_id
    if not (manifest / "_manifest.json").is_file():
        return names
    for landed in read_manifest(manifest):
        for key in landed.sources:
            spec = specs.get(key)
            if isinstance(spec, ExcelSource):
                names[f"{landed.name}#{spec.sheet}"] = key
            else:
                names.setdefault(landed.name, key)
    return names


def collect_unmapped_codes(mapping: SiteMapping, staging: Path, landing: Path) -> pd.DataFrame:
    """Unmapped local codes of one hospital over all its staged batches, most rows first."""
    parts: list[pd.DataFrame] = []
    for table, standard in STANDARD_CODE.items():
        for path in sorted((staging / table).glob("*.parquet")):
            frame = pq.read_table(path, columns=["local_code", standard, "_source_file"])
            frame = frame.to_pandas()
            frame = frame[frame["local_code"].notna() & frame[standard].isna()]
            if frame.empty:
                continue
            sources = _source_names(mapping, landing, path.stem)
            fallback = next((s.key for s in mapping.sources if s.table == table), table)
            parts.append(
                pd.DataFrame(
                    {
                        "table": table,
                        "source": frame["_source_file"].map(sources).fillna(fallback),
                        "local_code": frame["local_code"],
                        "batch": path.stem,
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=list(UNMAPPED_COLUMNS))
    rows = pd.concat(parts, ignore_index=True)
    grouped = rows.groupby(["table", "source", "local_code"], as_index=False).agg(
        rows=("batch", "size"), first_batch=("batch", "min"), last_batch=("batch", "max")
    )
    ordered = grouped.sort_values(["table", "rows", "local_code"], ascending=[True, False, True])
    return ordered[list(UNMAPPED_COLUMNS)].reset_index(drop=True)


def write_unmapped_codes(
    mapping: SiteMapping, staging: Path, landing: Path, out: Path
) -> pd.DataFrame:
    """Write the unmapped-code CSV (UTF-8 with BOM, so Excel opens Chinese codes) to `out`."""
    codes = collect_unmapped_codes(mapping, staging, landing)
    out.parent.mkdir(parents=True, exist_ok=True)
    codes.to_csv(out, index=False, encoding="utf-8-sig")
    log.info("%s: %d unmapped local code(s) written", mapping.hospital, len(codes))
    return codes
