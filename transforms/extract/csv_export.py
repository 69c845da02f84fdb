"""Read a delimited text export (any encoding) into raw string frames, rejecting bad rows.

Undecodable bytes or a wrong field count reject that row (with a reason) and never the file:
the rest of the batch still loads. The file is streamed: the encoding is decided from a leading
sample where that gives the whole file's answer, and rows come out in chunks of `chunk_rows`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from transforms.encoding import detect_file_encoding
from transforms.extract.raw import RawTable, Rejected, take_all

_SURROGATE = re.compile("[\udc80-\udcff]")


def read_csv_export(path: Path, encoding: str = "auto", delimiter: str = ",") -> RawTable:
    """The whole file as one raw table (see `iter_csv_export`)."""
    (raw,) = iter_csv_export(path, encoding, delimiter)
    return raw


def iter_csv_export(
    path: Path, encoding: str = "auto", delimiter: str = ",", chunk_rows: int | None = None
) -> Iterator[RawTable]:
    """Raw tables of at most `chunk_rows` records each (all in one when None); at least one.

    `_source_row` counts records after the header across the whole file, so chunks number
    their rows exactly as one whole-file read would; blank lines are not records.
    """
    codec = detect_file_encoding(path) if encoding == "auto" else encoding
    with path.open(encoding=codec, errors="surrogateescape", newline="") as handle:
        records = (r for r in csv.reader(handle, delimiter=delimiter) if r)
        first = next(records, None)
        if first is None:
            yield RawTable(pd.DataFrame({"_source_row": pd.Series([], dtype="int64")}), codec, 0)
            return
        header = [h.strip().lstrip("\ufeff") for h in first]
        batch: list[tuple[int, list[str]]] = []
        yielded = False
        for number, row in enumerate(records, start=1):
            batch.append((number, row))
            if chunk_rows is not None and len(batch) >= chunk_rows:
                yielded = True
                yield _chunk(take_all(batch), header, codec)
        if batch or not yielded:
            yield _chunk(batch, header, codec)


def _chunk(batch: list[tuple[int, list[str]]], header: list[str], codec: str) -> RawTable:
    """Raw table of numbered records: good rows in the frame, bad ones rejected with a reason."""
    kept: list[list[str]] = []
    numbers: list[int] = []
    rejected: list[Rejected] = []
    for number, row in batch:
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
    return RawTable(frame, codec, len(batch), rejected)
