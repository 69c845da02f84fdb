"""Read one sheet of an Excel workbook (xlsx/xls/ods, via calamine) into a raw string frame.

Excel exports differ from CSV in three ways handled here:

- title rows sit above the header: `header_row` (1-based) says where the header is and every
  row above it is skipped;
- merged cells: calamine returns the value only in a merged range's top-left cell, the rest
  read blank. Ranges come from `CalamineSheet.merged_cell_ranges` (xlsx/xls; None for ods) and
  every cell of a range gets the top-left value, so an MRN merged over two rows keeps its
  patient on both;
- typed cells: real date cells become ISO text (`YYYY-MM-DD`, or `YYYY-MM-DD HH:MM:SS` when
  the cell has a time), whole-number floats lose their `.0` (`12.0` -> `12`, so codes and
  ECOG stay codes), other numbers keep Python's shortest round-trip text. Dates typed as text
  (`2024年3月5日`, `20240305`) or left as serial numbers pass through for the staging date
  parser.

`_source_row` is the 1-based data row after the header (Excel row = header_row + number).
Fully blank rows carry no data and are skipped (trailing ones are just the sheet's padding);
numbering stays positional so it still matches the sheet.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pandas as pd
from python_calamine import CalamineSheet, CalamineWorkbook, WorksheetNotFound

from transforms.errors import MappingError
from transforms.extract.raw import RawTable, take_all

log = logging.getLogger(__name__)

ENCODING = "xlsx"  # Excel stores text as Unicode: no byte decoding to report
_PLAIN_INT_LIMIT = 1e15  # beyond this a float is not an integer code anyone typed


def read_excel_sheet(path: Path, sheet: str, header_row: int = 1) -> RawTable:
    """Rows of one sheet as strings under its header, plus `_source_row`.

    Raises MappingError naming the file, the sheet and the sheets that exist when the sheet is
    missing, or when the header row lies below the sheet's last row.
    """
    (raw,) = iter_excel_sheet(path, sheet, header_row)
    return raw


def iter_excel_sheet(
    path: Path, sheet: str, header_row: int = 1, chunk_rows: int | None = None
) -> Iterator[RawTable]:
    """`read_excel_sheet` in chunks of at most `chunk_rows` data rows (None: one chunk).

    Rows are streamed from calamine's parsed sheet instead of converted to Python all at once.
    A blank-headed column is dropped when empty in the whole sheet, so when the header has
    blank cells a first pass over the rows decides that before any chunk is built.
    """
    path = Path(path)
    with CalamineWorkbook.from_path(str(path)) as workbook:
        try:
            worksheet = workbook.get_sheet_by_name(sheet)
        except WorksheetNotFound:
            raise MappingError(
                f"{path.name}: sheet {sheet!r} not found; the workbook has sheets "
                f"{workbook.sheet_names}"
            ) from None
        merged = worksheet.merged_cell_ranges or []
        height = worksheet.end[0] + 1 if worksheet.end is not None else 0
        if header_row > height:
            raise MappingError(
                f"{path.name}#{sheet}: header_row {header_row} is below the last row ({height})"
            )
        rows = islice(sheet_rows(worksheet, merged), header_row - 1, None)
        header = [format_cell(c).strip() for c in next(rows)]
        names = [h or f"_column_{i + 1}" for i, h in enumerate(header)]
        blank = [i for i, h in enumerate(header) if not h]
        empty = set(blank)
        if blank:
            data = islice(sheet_rows(worksheet, merged), header_row, None)
            empty = _empty_columns(data, blank)
        dropped = [names[i] for i in sorted(empty)]
        source_name = f"{path.name}#{sheet}"
        kept: list[list[str]] = []
        numbers: list[int] = []
        total = 0
        yielded = False
        for number, row in enumerate(rows, start=1):
            cells = [format_cell(c) for c in row]
            if all(not c.strip() for c in cells):
                continue
            kept.append(cells)
            numbers.append(number)
            total += 1
            if chunk_rows is not None and len(kept) >= chunk_rows:
                yielded = True
                yield _raw_table(take_all(kept), take_all(numbers), names, dropped, source_name)
        if kept or not yielded:
            yield _raw_table(kept, numbers, names, dropped, source_name)
    log.debug("%s: %d data row(s), %d merged range(s)", source_name, total, len(merged))


def _raw_table(
    kept: list[list[str]],
    numbers: list[int],
    names: list[str],
    dropped: list[str],
    source_name: str,
) -> RawTable:
    frame = pd.DataFrame(kept, columns=names, dtype=object).drop(columns=dropped)
    frame["_source_row"] = pd.Series(numbers, dtype="int64")
    return RawTable(frame, ENCODING, len(kept), source_name=source_name)


def _empty_columns(rows: Iterable[list[Any]], columns: list[int]) -> set[int]:
    """Which of `columns` hold no text in any of `rows`."""
    empty = set(columns)
    for row in rows:
        for i in [i for i in empty if format_cell(row[i]).strip()]:
            empty.discard(i)
        if not empty:
            break
    return empty


def sheet_rows(worksheet: CalamineSheet, ranges: list[Any]) -> Iterator[list[Any]]:
    """The sheet's rows as `to_python(skip_empty_area=False)` gives them, merged cells filled.

    calamine's row iterator starts at row 0 but at the first used column, so rows are padded
    on the left; each merged range's top-left value is copied as its rows go by (see
    `fill_merged_cells`, which does the same on a whole grid).
    """
    pad = [""] * (worksheet.start[1] if worksheet.start is not None else 0)
    starting: dict[int, list[tuple[int, int, int]]] = {}
    for (top, left), (bottom, right) in ranges:
        starting.setdefault(top, []).append((left, bottom, right))
    active: list[tuple[int, int, int, Any]] = []
    for number, cells in enumerate(worksheet.iter_rows()):
        row = pad + cells
        for left, bottom, right in starting.get(number, ()):
            active.append((left, bottom, right, row[left] if left < len(row) else ""))
        for left, _, right, value in active:
            for c in range(left, min(right, len(row) - 1) + 1):
                row[c] = value
        active = [a for a in active if a[1] > number]
        yield row


def fill_merged_cells(grid: list[list[Any]], ranges: list[tuple[tuple[int, int], ...]]) -> None:
    """Copy each merged range's top-left value into all its cells (0-based, inclusive ends)."""
    for (top, left), (bottom, right) in ranges:
        if top >= len(grid):
            continue
        value = grid[top][left] if left < len(grid[top]) else ""
        for r in range(top, min(bottom, len(grid) - 1) + 1):
            row = grid[r]
            for c in range(left, min(right, len(row) - 1) + 1):
                row[c] = value


def format_cell(value: Any) -> str:
    """One cell as the text a clerk would read, in a form the staging parsers understand."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _PLAIN_INT_LIMIT:
            return str(int(value))
        return repr(value)
    return str(value)
