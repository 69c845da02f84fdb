"""What the hospital end-to-end tests share: the defect -> rule table, log capture, and
readers of the gov files and the defect manifest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pyarrow.parquet as pq

# Which rule must catch each injected defect kind (a prefix of the rule id), or "dropped".
EXPECTED_RULE = {
    "invalid_id_checksum": "patient.resident_id_checksum",
    "death_before_birth": "patient.death_after_birth",
    "future_date": "diagnosis.diagnosis_date_not_future",
    "lab_out_of_range": "lab.range_",
    "negative_lab": "lab.value_non_negative",
    "unknown_unit": "lab.unit_convertible",
    "unknown_local_code": "{table}.code_mapped",
    "undecodable_bytes": "extract.decodable",
    "blank_mandatory": "{table}.",
    "unparseable_date": "{table}.values_parseable",
    "duplicate_row": "dropped",
}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log line emitted inside the block, at DEBUG and above (for the PHI scan)."""
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield capture.lines
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)


def gov_frame(settings, hospital: str, name: str) -> pd.DataFrame:
    """One gov file (e.g. reconciliation.parquet) of every batch of a hospital, concatenated."""
    paths = sorted((settings.gov / hospital).glob(f"*/{name}"))
    return pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)


def injected_defects(settings, hospital: str) -> pd.DataFrame:
    """The generator's defect manifest rows of one hospital."""
    frame = pd.read_csv(settings.sources / "_truth" / "defects.csv", dtype=str)
    return frame[frame["hospital"] == hospital]


def all_quarantine(settings, hospital: str) -> pd.DataFrame:
    """Quarantine rows of every stage (extract, validate, fhir) and batch of a hospital."""
    stages = ("extract", "validate", "fhir")
    return pd.concat([gov_frame(settings, hospital, f"quarantine_{s}.parquet") for s in stages])
