"""Where one hospital batch's files live in each layer, and small JSON/Parquet helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.quarantine_state import QUARANTINE_COLUMNS
from pipeline.settings import Settings


@dataclass(frozen=True)
class BatchFiles:
    settings: Settings
    hospital: str
    batch_id: str

    @property
    def landing(self) -> Path:
        return self.settings.landing / self.hospital / self.batch_id

    def staging(self, table: str) -> Path:
        return self.settings.staging / self.hospital / table / f"{self.batch_id}.parquet"

    @property
    def fhir(self) -> Path:
        return self.settings.fhir / self.hospital / self.batch_id

    @property
    def gov(self) -> Path:
        return self.settings.gov / self.hospital / self.batch_id

    def quarantine(self, stage: str) -> Path:
        return self.gov / f"quarantine_{stage}.parquet"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), "utf-8")
    tmp.replace(path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_parquet(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    """Write atomically (temp file + rename) so a killed task never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


class ParquetAppender:
    """Build one Parquet file from frames appended in order, atomically like `write_parquet`.

    Rows go to a temp file that `close` renames into place (`discard` removes it). Appends
    smaller than half of `row_group_rows` are buffered as Arrow and written together, so a
    file fed many small chunks still gets row groups of a useful size; the buffer never holds
    more than half a row group.
    """

    def __init__(self, path: Path, schema: pa.Schema | None, row_group_rows: int) -> None:
        self.path = path
        self.schema = schema
        self.row_group_rows = row_group_rows
        self._tmp = path.with_suffix(".parquet.tmp")
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def append(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
        if self._pending_rows + len(table) > self.row_group_rows:
            self._flush()
        self._pending.append(table)
        self._pending_rows += len(table)
        if 2 * self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending and self._writer is not None:
            self._writer.write_table(pa.concat_tables(self._pending))
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        """Write what is buffered and move the file into place (nothing if never appended)."""
        if self._writer is None:
            return
        self._flush()
        self._writer.close()
        self._tmp.replace(self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)
        self._pending = []


class NdjsonAppender:
    """One NDJSON file per resource type in a folder, appended to in order while mapping.

    Parts go to `<type>.ndjson.partial`; `close` replaces the folder's previous per-type files
    (not `_`-prefixed ones such as tombstones) with them, so a failed run leaves the old files.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handles: dict[str, BinaryIO] = {}

    def write(self, resource_type: str, parts: Iterable[bytes]) -> None:
        handle = self._handles.get(resource_type)
        if handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = self._handles[resource_type] = self._partial(resource_type).open("wb")
        handle.writelines(parts)

    def _partial(self, resource_type: str) -> Path:
        return self.folder / f"{resource_type}.ndjson.partial"

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        for old in self.folder.glob("[!_]*.ndjson"):
            old.unlink()
        for resource_type in self._handles:
            self._partial(resource_type).replace(self.folder / f"{resource_type}.ndjson")

    def discard(self) -> None:
        for resource_type, handle in self._handles.items():
            handle.close()
            self._partial(resource_type).unlink(missing_ok=True)


def quarantine_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS)).astype(QUARANTINE_COLUMNS)


def extract_rejections(
    hospital: str, batch_id: str, table: str, source_file: str, rejected: Iterable
) -> list[dict]:
    """Quarantine rows for source rows a reader could not read (no payload: never parsed)."""
    return [
        {
            "hospital": hospital,
            "batch_id": batch_id,
            "table": table,
            "source_file": source_file,
            "source_row": r.source_row,
            "row_hash": None,
            "stage": "extract",
            "rule_id": r.rule,
            "reason": r.reason,
            "payload": None,
        }
        for r in rejected
    ]
