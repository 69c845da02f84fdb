"""Where one hospital batch's files live in each layer, and small JSON/Parquet helpers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.settings import Settings

QUARANTINE_COLUMNS = (
    "hospital",
    "batch_id",
    "table",
    "source_file",
    "source_row",
    "row_hash",
    "stage",
    "rule_id",
    "reason",
    "payload",
)


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


def quarantine_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))
    frame["source_row"] = frame["source_row"].astype("int64")
    return frame.astype({c: "string" for c in QUARANTINE_COLUMNS if c != "source_row"})


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
