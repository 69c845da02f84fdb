"""A hospital's newest row per key over its batches, kept in a file so a nightly run reads only
the batches added since the last one instead of every batch the hospital ever had.

Batch files never change once their batch finished, so a cached result stays valid while the
batches it covers are, in order, the first of those asked for; otherwise (a batch finished out
of order, or removed) it is computed again from every batch. Cache files sit beside the
hospital's staging tables, inside the hospital boundary like the rows they hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_BATCHES = b"walnut_batches"


def newest_per_key(
    path: Path,
    batches: Sequence[str],
    read_batch: Callable[[str], pd.DataFrame],
    key: str,
    columns: Sequence[str],
) -> pd.DataFrame:
    """The last row per `key` (rows without one dropped) of `read_batch(b)[columns]` over
    `batches` in order, from the cache in `path` plus the batches it does not cover."""
    cached, held = _read(path)
    if list(batches[: len(held)]) != held:
        cached, held = None, []
    parts = [] if cached is None else [cached]
    parts += [read_batch(batch_id)[list(columns)] for batch_id in batches[len(held) :]]
    if not parts:
        return pd.DataFrame(columns=list(columns))
    newest = pd.concat(parts, ignore_index=True).dropna(subset=[key])
    newest = newest.drop_duplicates(key, keep="last").reset_index(drop=True)
    if len(batches) > len(held):
        _write(path, newest, list(batches))
    return newest


def _read(path: Path) -> tuple[pd.DataFrame | None, list[str]]:
    try:
        table = pq.read_table(path)
        held = json.loads(table.schema.metadata[_BATCHES])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        return None, []
    return table.to_pandas(), held


def _write(path: Path, frame: pd.DataFrame, batches: list[str]) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({_BATCHES: json.dumps(batches)})
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    pq.write_table(table, partial)
    os.replace(partial, path)
