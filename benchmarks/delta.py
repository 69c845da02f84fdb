"""A nightly delta after a full load: ~1 % of each source's rows exported again or changed.

east_liver gets `<file>_delta.csv` files holding every 100th data row; north_chest a second
workbook with every 100th row of each sheet; south_general's HIS rows with rowid % 100 = 0
get a newer `updated_at`, so the watermark reads them again. Re-sent rows keep their natural
keys: their FHIR ids are the same and the warehouse keeps the newest version.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path

EVERY = 100
HIS_TABLES = ("pat_master", "diag_record", "drug_order", "surgery", "visit")


def write_delta_exports(sources: Path) -> int:
    """Write the delta into the hospitals' source folders; returns the delta's source rows."""
    return (
        _csv_delta(sources / "east_liver")
        + _excel_delta(sources / "north_chest")
        + _his_delta(sources / "south_general" / "his.sqlite")
    )


def _csv_delta(folder: Path) -> int:
    rows = 0
    for path in sorted(folder.glob("*.csv")):
        if path.stem.endswith("_delta"):
            continue
        lines = path.read_bytes().splitlines(keepends=True)
        picked = lines[1::EVERY]
        (folder / f"{path.stem}_delta.csv").write_bytes(b"".join([lines[0], *picked]))
        rows += len(picked)
    return rows


def _excel_delta(folder: Path) -> int:
    import xlsxwriter
    from python_calamine import CalamineWorkbook

    from synthetic.north_chest import SHEETS, WORKBOOK, SheetWriter

    source = CalamineWorkbook.from_path(str(folder / WORKBOOK))
    target = xlsxwriter.Workbook(str(folder / (Path(WORKBOOK).stem + "_delta.xlsx")))
    formats = {
        "title": target.add_format({"bold": True}),
        "header": target.add_format({"bold": True}),
        "date": target.add_format({"num_format": "yyyy-mm-dd"}),
        "datetime": target.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
    }
    rows = 0
    for table, sheet in SHEETS.items():
        writer = SheetWriter(target, table, formats)
        data = source.get_sheet_by_name(sheet).to_python(skip_empty_area=False)[2:]
        for row in data[::EVERY]:
            writer.write([_cell(v) for v in row])
            rows += 1
    target.close()
    return rows


def _cell(value: object) -> object:
    if value == "" or value is None:
        return None
    if isinstance(value, datetime | date | str | int | float):
        return value
    return str(value)


def _his_delta(database: Path) -> int:
    if not database.is_file():
        return 0
    rows = 0
    with sqlite3.connect(database) as con:
        for table in HIS_TABLES:
            (newest,) = con.execute(f"SELECT max(updated_at) FROM {table}").fetchone()
            cursor = con.execute(
                f"UPDATE {table} SET updated_at = datetime(?, '+1 day') WHERE rowid % ? = 0",
                (newest, EVERY),
            )
            rows += cursor.rowcount
    return rows
