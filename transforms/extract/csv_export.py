"""Read a delimited text export (any encoding) into a raw string frame, rejecting bad rows.

Undecodable bytes or a wrong field count reject that row (with a reason) and never the file:
the rest of the batch still loads.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from transforms.encoding import detect_encoding
from transforms.extract.raw import RawTable, Rejected

_SURROGATE = re.compile("[\udc80-\udcff]")


def read_csv_export(path: Path, encoding: str = "auto", delimiter: str = ",") -> RawTable:
    data = path.read_bytes()
    codec = detect_encoding(data) if encoding == "auto" else encoding
    text = data.decode(codec, errors="surrogateescape")
    records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if r]
    if not records:
        return RawTable(pd.DataFrame({"_source_row": pd.Series([], dtype="int64")}), codec, 0)
    header = [h.strip().lstrip("\ufeff") for h in records[0]]
    kept: list[list[str]] = []
    numbers: list[int] = []
    rejected: list[Rejected] = []
    for number, row in enumerate(records[1:], start=1):
        if _SURROGATE.search("\x1f".join(row)):
            rejected.append(
                Rejected(number, "extract.decodable", f"row has bytes that are not valid {codec}")
            )
        elif len(row) != len(header):
            rejected.append(
                Rejected(
                    number,
                    "extract.field_count",
                    f"expected {len(header)} fields, found {len(row)}",
                )
            )
        else:
            kept.append(row)
            numbers.append(number)
    frame = pd.DataFrame(kept, columns=header, dtype=object)
    frame["_source_row"] = pd.Series(numbers, dtype="int64")
    return RawTable(frame, codec, len(records) - 1, rejected)
