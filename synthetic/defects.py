"""Injected data-quality defects: which patients carry which defect, and the truth log."""

from __future__ import annotations

import csv
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DEFECT_KINDS = (
    "invalid_id_checksum",
    "death_before_birth",
    "future_date",
    "lab_out_of_range",
    "negative_lab",
    "unknown_unit",
    "unknown_local_code",
    "duplicate_row",
    "undecodable_bytes",
    "blank_mandatory",
    "unparseable_date",
)
DEFECT_COLUMNS = ("kind", "hospital", "table", "source_file", "source_row", "column", "source_key")
MAX_PER_KIND = 200


@dataclass(frozen=True)
class Defect:
    kind: str
    variant: str  # which source table of the hospital receives it


@dataclass(frozen=True)
class Target:
    """Where a defect landed within one patient's rows, before row numbers are known."""

    kind: str
    table: str  # the hospital's source table key
    index: int  # position within that patient's rows of the table
    column: str
    raw: bytes | None = None  # bytes replacing the placeholder text (undecodable_bytes)
    sub_index: int | None = None  # OBX position within an HL7 message


def count_per_kind(patients: int, kinds: int) -> int:
    """A few defects per kind (3 at 200 patients), growing slowly, never over 3/4 of patients."""
    wanted = min(3 + patients // 200, MAX_PER_KIND)
    return max(1, min(wanted, (patients * 3 // 4) // max(kinds, 1)))


def plan_defects(
    rng: random.Random, patients: int, variants: dict[str, tuple[str, ...]]
) -> dict[int, Defect]:
    """Give each defect instance its own patient so that every defect row is wrong in one way."""
    per_kind = count_per_kind(patients, len(variants))
    instances = [
        Defect(kind, options[k % len(options)])
        for kind, options in variants.items()
        for k in range(per_kind)
    ]
    chosen = rng.sample(range(patients), min(len(instances), patients))
    return dict(zip(chosen, instances, strict=False))


class DefectLog:
    """Streams defect truth rows to `_truth/defects.csv` and counts them."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(DEFECT_COLUMNS)
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(
        self,
        kind: str,
        hospital: str,
        table: str,
        source_file: str,
        source_row: int | str,
        column: str,
        source_key: str = "",
    ) -> None:
        """One defect: canonical table, file relative to the hospital folder, 1-based data row.

        Database rows also give their primary key (`source_key`): a database extract reads
        rows by key and watermark, so a position in the table does not identify them.
        """
        self._writer.writerow((kind, hospital, table, source_file, source_row, column, source_key))
        self.counts[(hospital, kind)] += 1

    def close(self) -> None:
        self._file.close()
