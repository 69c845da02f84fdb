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
from pathlib import Path
from typing import Any

import pandas as pd
from python_calamine import CalamineWorkbook, WorksheetNotFound

from transforms.errors import MappingError
from transforms.extract.raw import RawTable

log = logging.getLogger(__name__)

ENCODING = "xlsx"  # Excel stores text as Unicode: no byte decoding to report
_PLAIN_INT_LIMIT = 1e15  # beyond this a float is not an integer code anyone typed


def read_excel_sheet(path: Path, sheet: str, header_row: int = 1) -> RawTable:
    """Rows of one sheet as strings under its header, plus `_source_row`.

    Raises MappingError naming the file, the sheet and the sheets that exist when the sheet is
    missing, or when the header row lies below the sheet's last row.
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
        grid = worksheet.to_python(skip_empty_area=False)
        merged = worksheet.merged_cell_ranges or []
    fill_merged_cells(grid, merged)
    if header_row > len(grid):
        raise MappingError(
            f"{path.name}#{sheet}: header_row {header_row} is below the last row ({len(grid)})"
        )
    header = [format_cell(c).strip() for c in grid[header_row - 1]]
    names = [h or f"_column_{i + 1}" for i, h in enumerate(header)]
    kept: list[list[str]] = []
    numbers: list[int] = []
    for number, row in enumerate(grid[header_row:], start=1):
        cells = [format_cell(c) for c in row]
        if all(not c.strip() for c in cells):
            continue
        kept.append(cells)
        numbers.append(number)
    blank_named = [n for n, h in zip(names, header, strict=True) if not h]
    frame = pd.DataFrame(kept, columns=names, dtype=object)
    empty_unnamed = [c for c in blank_named if not frame[c].str.strip().astype(bool).any()]
    frame = frame.drop(columns=empty_unnamed)
    frame["_source_row"] = pd.Series(numbers, dtype="int64")
    log.debug("%s#%s: %d data row(s), %d merged range(s)", path.name, sheet, len(kept), len(merged))
    return RawTable(frame, ENCODING, len(kept), source_name=f"{path.name}#{sheet}")


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
