"""Excel reader: title rows, merged cells, typed date/number cells, row numbers, bad sheets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook

from transforms.errors import MappingError
from transforms.extract import read_landed
from transforms.extract.excel import (
    fill_merged_cells,
    format_cell,
    iter_excel_sheet,
    read_excel_sheet,
    sheet_rows,
)
from transforms.mapping import ExcelSource

HEADER = ["病案号", "日期", "时间", "代码", "结果"]


def _write_workbook(path: Path) -> None:
    book = xlsxwriter.Workbook(str(path))
    date_fmt = book.add_format({"num_format": "yyyy-mm-dd"})
    time_fmt = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    sheet = book.add_worksheet("用药")
    sheet.merge_range(0, 0, 0, len(HEADER) - 1, "北方胸科医院 数据导出")
    sheet.write_row(1, 0, HEADER)
    # data row 1: real date and datetime cells, whole-number float code, decimal result
    sheet.write_string(2, 0, "NC000001")
    sheet.write_datetime(2, 1, dt.datetime(2024, 3, 5), date_fmt)
    sheet.write_datetime(2, 2, dt.datetime(2024, 3, 5, 13, 31), time_fmt)
    sheet.write_number(2, 3, 12.0)
    sheet.write_number(2, 4, 14.96)
    # data rows 2-3: MRN merged over two rows; text and serial-number dates
    sheet.merge_range(3, 0, 4, 0, "NC000002")
    sheet.write_string(3, 1, "2024年3月5日")
    sheet.write_string(4, 1, "20240305")
    sheet.write_number(4, 2, 45356)
    sheet.write_number(4, 4, -2500000.0)
    # data row 4 left blank; data row 5 has a value; trailing blank rows after it
    sheet.write_string(6, 0, "NC000003")
    sheet.write_blank(8, 0, None, date_fmt)
    book.add_worksheet("空表")
    # starts at column B; header cells D and F blank: D has one value in the last row, F none
    blank = book.add_worksheet("空列")
    blank.write_row(0, 1, ["病案号", "结果", "", "单位", ""])
    for row in range(1, 6):
        blank.write_row(row, 1, [f"NC{row:06d}", str(row), "", "g/L"])
    blank.merge_range(2, 2, 3, 2, "7")
    blank.write_string(5, 3, "备注")
    book.close()


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    path = tmp_path / "导出.xlsx"
    _write_workbook(path)
    return path


def test_reads_typed_cells_below_the_title(workbook: Path) -> None:
    raw = read_excel_sheet(workbook, "用药", header_row=2)
    assert raw.source_name == "导出.xlsx#用药"
    assert list(raw.frame.columns) == HEADER + ["_source_row"]
    first = raw.frame.iloc[0]
    assert first["日期"] == "2024-03-05"
    assert first["时间"] == "2024-03-05 13:31:00"
    assert first["代码"] == "12"
    assert first["结果"] == "14.96"


def test_merged_mrn_fills_every_row_it_spans(workbook: Path) -> None:
    frame = read_excel_sheet(workbook, "用药", header_row=2).frame
    assert frame["病案号"].tolist() == ["NC000001", "NC000002", "NC000002", "NC000003"]
    assert frame.iloc[1]["日期"] == "2024年3月5日"
    assert frame.iloc[2]["日期"] == "20240305"
    assert frame.iloc[2]["时间"] == "45356"  # serial number: the staging date parser reads it
    assert frame.iloc[2]["结果"] == "-2500000"


def test_source_rows_are_positional_and_blank_rows_skipped(workbook: Path) -> None:
    raw = read_excel_sheet(workbook, "用药", header_row=2)
    assert raw.frame["_source_row"].tolist() == [1, 2, 3, 5]
    assert raw.rows_read == 4
    assert raw.rejected == []


def test_missing_sheet_names_file_sheet_and_existing_sheets(workbook: Path) -> None:
    with pytest.raises(MappingError) as caught:
        read_excel_sheet(workbook, "病理", header_row=2)
    message = str(caught.value)
    assert "导出.xlsx" in message and "'病理'" in message
    assert "用药" in message and "空表" in message


def test_header_row_below_the_sheet_is_a_mapping_error(workbook: Path) -> None:
    with pytest.raises(MappingError, match="header_row 40"):
        read_excel_sheet(workbook, "用药", header_row=40)


def test_registered_as_the_excel_reader(workbook: Path) -> None:
    spec = ExcelSource(table="lab", kind="excel", files="*.xlsx", sheet="用药", header_row=2)
    (raw,) = list(read_landed(spec, workbook))
    assert len(raw.frame) == 4 and raw.source_name == "导出.xlsx#用药"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("", ""),
        ("NC1", "NC1"),
        (2.0, "2"),
        (14.96, "14.96"),
        (-0.5, "-0.5"),
        (7, "7"),
        (True, "true"),
        (dt.date(2024, 3, 5), "2024-03-05"),
        (dt.datetime(2024, 3, 5, 0, 0), "2024-03-05"),
        (dt.datetime(2024, 3, 5, 8, 5, 9), "2024-03-05 08:05:09"),
        (1e20, "1e+20"),
    ],
)
def test_format_cell(value: object, text: str) -> None:
    assert format_cell(value) == text


def test_fill_merged_cells_copies_top_left_value() -> None:
    grid = [["a", "", ""], ["", "x", ""], ["", "", ""]]
    fill_merged_cells(grid, [((0, 0), (2, 0)), ((1, 1), (2, 2))])
    assert grid == [["a", "", ""], ["a", "x", "x"], ["a", "x", "x"]]


@pytest.mark.parametrize("sheet", ["用药", "空列", "空表"])
def test_streamed_rows_are_the_filled_grid(workbook: Path, sheet: str) -> None:
    with CalamineWorkbook.from_path(str(workbook)) as book:
        worksheet = book.get_sheet_by_name(sheet)
        grid = worksheet.to_python(skip_empty_area=False)
        fill_merged_cells(grid, worksheet.merged_cell_ranges or [])
        assert list(sheet_rows(worksheet, worksheet.merged_cell_ranges or [])) == grid


def test_blank_headed_columns_dropped_only_when_empty_in_the_whole_sheet(workbook: Path) -> None:
    whole = read_excel_sheet(workbook, "空列")
    assert list(whole.frame.columns) == ["病案号", "结果", "_column_4", "单位", "_source_row"]
    assert whole.frame["结果"].tolist() == ["1", "7", "7", "4", "5"]
    chunks = list(iter_excel_sheet(workbook, "空列", chunk_rows=2))
    assert [len(c.frame) for c in chunks] == [2, 2, 1]
    assert all(list(c.frame.columns) == list(whole.frame.columns) for c in chunks)
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)


def test_chunks_number_rows_as_one_read(workbook: Path) -> None:
    whole = read_excel_sheet(workbook, "用药", header_row=2)
    chunks = list(iter_excel_sheet(workbook, "用药", header_row=2, chunk_rows=1))
    assert [c.rows_read for c in chunks] == [1, 1, 1, 1]
    assert {c.source_name for c in chunks} == {"导出.xlsx#用药"}
    joined = pd.concat([c.frame for c in chunks], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    (empty,) = iter_excel_sheet(workbook, "空列", header_row=6, chunk_rows=1)
    assert empty.rows_read == 0 and "_source_row" in empty.frame
