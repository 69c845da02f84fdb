"""Tests for transforms.units: unit spelling, the unit table, UCUM conversion, numeric parsing."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from transforms.errors import MappingError
from transforms.units import (
    UnitTable,
    convert_to_ucum,
    load_unit_table,
    normalise_unit_spelling,
    parse_numeric,
)


@pytest.fixture(scope="module")
def table() -> UnitTable:
    return load_unit_table()


def convert_one(table: UnitTable, value: float, unit: str | None, analyte: str | None):
    values, units = convert_to_ucum(
        pd.Series([value]),
        pd.Series([unit], dtype=object),
        pd.Series([analyte], dtype=object),
        table,
    )
    return values.iloc[0], units.iloc[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ng/ml", "ng/mL"),
        (" iu/ml ", "IU/mL"),
        ("µmol/L", "umol/L"),
        ("μmol/L", "umol/L"),
        ("umol/l", "umol/L"),
        ("×10^9/L", "10*9/L"),
        ("10^9/L", "10*9/L"),
        ("x10^9/l", "10*9/L"),
        ("10⁹/L", "10*9/L"),
        ("１０＾９／Ｌ", "10*9/L"),
        ("ｇ／ｄＬ", "g/dL"),
        ("mg / dl", "mg/dL"),
        ("mU/L", "mU/L"),
        ("MU/L", "MU/L"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalise_unit_spelling(raw: str | None, expected: str) -> None:
    assert normalise_unit_spelling(pd.Series([raw], dtype=object)).iloc[0] == expected


def test_default_table_loads(table: UnitTable) -> None:
    assert table.conversions[("1834-1", "IU/mL")] == ("ng/mL", 1.21)
    assert table.conversions[("6301-6", "")] == ("{INR}", 1.0)
    assert {"1834-1", "1975-2", "1751-7", "2160-0", "2039-6", "6301-6", "777-3"} <= table.analytes


@pytest.mark.parametrize(
    ("value", "unit", "analyte", "expected_value", "expected_unit"),
    [
        (100.0, "IU/mL", "1834-1", 121.0, "ng/mL"),
        (100.0, "iu/ml", "1834-1", 121.0, "ng/mL"),
        (100.0, "ng/mL", "1834-1", 100.0, "ng/mL"),
        (1.0, "mg/dL", "1975-2", 17.1, "umol/L"),
        (3.5, "g/dL", "1751-7", 35.0, "g/L"),
        (1.0, "mg/dL", "2160-0", 88.4, "umol/L"),
        (5.2, "ug/L", "2039-6", 5.2, "ng/mL"),
        (1.1, None, "6301-6", 1.1, "{INR}"),
        (1.1, "1", "6301-6", 1.1, "{INR}"),
        (210.0, "×10^9/L", "777-3", 210.0, "10*9/L"),
        (40.0, "IU/L", "1742-6", 40.0, "U/L"),
        (40.0, "U/L", "1920-8", 40.0, "U/L"),
        (135.0, "g/L", "718-7", 135.0, "g/L"),
        (13.5, "g/dL", None, 135.0, "g/L"),
    ],
)
def test_convert_to_ucum(
    table: UnitTable,
    value: float,
    unit: str | None,
    analyte: str | None,
    expected_value: float,
    expected_unit: str,
) -> None:
    converted, canonical = convert_one(table, value, unit, analyte)
    assert converted == pytest.approx(expected_value)
    assert canonical == expected_unit


def test_micro_spellings_convert_identically(table: UnitTable) -> None:
    units = pd.Series(["µmol/L", "μmol/L", "umol/L"])
    values, canonical = convert_to_ucum(
        pd.Series([17.0, 17.0, 17.0]), units, pd.Series(["1975-2"] * 3), table
    )
    assert values.tolist() == [17.0, 17.0, 17.0]
    assert canonical.tolist() == ["umol/L"] * 3


@pytest.mark.parametrize(
    ("unit", "analyte"),
    [
        ("furlong", "1975-2"),
        ("g/L", "1975-2"),  # listed analyte: generic * rows do not apply
        ("mmol/L", "1834-1"),
        ("bogus", None),
    ],
)
def test_unknown_unit_is_na(table: UnitTable, unit: str, analyte: str | None) -> None:
    converted, canonical = convert_one(table, 1.0, unit, analyte)
    assert math.isnan(converted)
    assert pd.isna(canonical)


def test_convert_keeps_value_index(table: UnitTable) -> None:
    values = pd.Series([100.0, 1.0], index=[7, 9])
    converted, canonical = convert_to_ucum(
        values, pd.Series(["IU/mL", "mg/dL"]), pd.Series(["1834-1", "1975-2"]), table
    )
    assert converted.index.tolist() == [7, 9]
    assert canonical.index.tolist() == [7, 9]
    assert converted.tolist() == pytest.approx([121.0, 17.1])


def write_table(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "units.csv"
    path.write_text("analyte,from_unit,to_unit,factor,source\n" + body, encoding="utf-8")
    return path


def test_table_rejects_duplicate_after_normalisation(tmp_path: Path) -> None:
    path = write_table(tmp_path, "1975-2,umol/L,umol/L,1,a\n1975-2,µmol/L,umol/L,1,b\n")
    with pytest.raises(MappingError, match=r"line 3, column from_unit: duplicate of line 2"):
        load_unit_table(path)


@pytest.mark.parametrize("factor", ["zero", "0", "-2", "nan", "inf", ""])
def test_table_rejects_bad_factor(tmp_path: Path, factor: str) -> None:
    path = write_table(tmp_path, f"1975-2,mg/dL,umol/L,{factor},x\n")
    with pytest.raises(MappingError, match=r"units\.csv, line 2, column factor"):
        load_unit_table(path)


def test_table_rejects_two_canonical_units(tmp_path: Path) -> None:
    path = write_table(tmp_path, "1975-2,umol/L,umol/L,1,a\n1975-2,mg/dL,mg/dL,1,b\n")
    with pytest.raises(MappingError, match=r"line 3, column to_unit"):
        load_unit_table(path)


def test_table_rejects_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "units.csv"
    path.write_text("analyte,unit,factor\n1975-2,mg/dL,17.1\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"line 1: header"):
        load_unit_table(path)


def test_parse_numeric() -> None:
    values = pd.Series(
        ["<0.5", " 1,234.5 ", "１２．５", ">=3", "≥ 2"]
        + ["阴性", "12,5", None, "", "inf"]
        + ["1e3", "-4"]
    )
    parsed = parse_numeric(values)
    assert parsed.dtype == "float64"
    assert parsed.iloc[:5].tolist() == [0.5, 1234.5, 12.5, 3.0, 2.0]
    assert parsed.iloc[5:10].isna().all()
    assert parsed.iloc[10:].tolist() == [1000.0, -4.0]
    assert parse_numeric(pd.Series([1, 2])).tolist() == [1.0, 2.0]
