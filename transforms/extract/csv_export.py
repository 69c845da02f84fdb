"""Read a delimited text export (any encoding) into raw string frames, rejecting bad rows.

Undecodable bytes or a wrong field count reject that row (with a reason) and never the file:
the rest of the batch still loads. The file is streamed: the encoding is decided from a leading
sample where that gives the whole file's answer, and rows come out in chunks of `chunk_rows`.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from transforms.encoding import (
    _BOMS,
    _PLAUSIBLE,
    SAMPLE_BYTES,
    _guess_with_detector,
    _sample,
    detect_encoding,
)
from transforms.extract.raw import RawTable, Rejected, take_all

_SURROGATE = re.compile("[\udc80-\udcff]")
_BLOCK_BYTES = 1 << 20


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


def detect_file_encoding(path: Path) -> str:
    """`detect_encoding` of the file's bytes, without holding the file in the usual cases.

    Same answer in the same order: a byte-order mark (leading bytes); valid UTF-8 (checked
    block by block); the detector's answer on the leading sample when it is a plausible
    non-UTF-8 codec. Only when the detector is unsure (typically a corrupted file) are the
    whole bytes read, by `detect_encoding` itself.
    """
    with path.open("rb") as handle:
        head = handle.read(SAMPLE_BYTES + 1)  # one past the sample: `_sample` cuts as on all
    if len(head) <= SAMPLE_BYTES:
        return detect_encoding(head)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if _is_utf8(path):
        return "utf-8"
    guess = _guess_with_detector(_sample(head))
    if guess in _PLAUSIBLE and guess != "utf-8":
        return guess
    return detect_encoding(path.read_bytes())


def _is_utf8(path: Path) -> bool:
    """Whether the whole file decodes as strict UTF-8, read in blocks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        try:
            for block in iter(lambda: handle.read(_BLOCK_BYTES), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True
