"""Profiling a new export: types, date formats, shapes and a draft mapping, never raw values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from transforms.onboarding.draft import guess_target
from transforms.onboarding.patterns import guess_type, value_shape
from transforms.onboarding.profile import profile_export, write_profile

NAMES = ["张伟明", "李秀英", "王建国", "欧阳娜娜"]
IDS = ["110101196103050017", "11010119700101002X", "440301198512120031", "510104195002280045"]
PHONES = ["13912345678", "13800001111", "13755556666", "13611112222"]
MRNS = ["ZY900001", "ZY900002", "ZY900003", "ZY900004"]


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("2024-03-05", "9999-99-99"),
        ("AB123456", "AA999999"),
        ("张三", "CC"),
        ("110101196103050017", "9{18}"),
        ("Smith, J", "Aaaaa,_A"),
        ("2024年3月5日", "9999C9C9C"),
    ],
)
def test_value_shape(value: str, shape: str) -> None:
    assert value_shape(value) == shape


@pytest.mark.parametrize(
    ("values", "kind", "formats"),
    [
        (["05/03/2024", "13/12/2023", "01/01/2020"], "date", ("%d/%m/%Y",)),
        (
            ["2024-03-05", "20240306", "2024年3月7日"],
            "date",
            ("%Y-%m-%d", "%Y%m%d", "%Y年%m月%d日"),
        ),
        (["1", "22", "-3"], "integer", ()),
        (["1.5", "22", "0.25"], "decimal", ()),
        (["ELD-HCC", "C22.0", "AFP"], "code", ()),
        (["肝细胞癌 晚期", "no idea at all", "x"], "text", ()),
        (["", None], "empty", ()),
    ],
)
def test_guess_type(values: list, kind: str, formats: tuple[str, ...]) -> None:
    guess = guess_type(pd.Series(values, dtype=object))
    assert guess.kind == kind
    assert set(guess.formats) == set(formats)


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ("住院号", "mrn"),
        ("病案号", "mrn"),
        ("pat_id", "mrn"),
        ("姓名", "name"),
        ("Patient Name", "name"),
        ("身份证号", "resident_id"),
        ("出生日期", "birth_date"),
        ("DOB", "birth_date"),
        ("备注", None),
    ],
)
def test_guess_target(header: str, target: str | None) -> None:
    assert guess_target(header) == target


@pytest.fixture
def export(tmp_path: Path) -> Path:
    rows = ["住院号,姓名,身份证号,联系电话,出生日期,性别,备注"]
    for i in range(40):
        k = i % 4
        rows.append(f"{MRNS[k]},{NAMES[k]},{IDS[k]},{PHONES[k]},0{k + 1}/0{k + 3}/1961,男,,"[:-1])
    path = tmp_path / "新医院_患者.csv"
    path.write_bytes("\n".join(rows).encode("gb18030"))
    return path


def test_profile_reports_types_and_shapes(export: Path) -> None:
    (table,) = profile_export(export)
    assert (table.kind, table.encoding, table.rows) == ("csv", "gb18030", 40)
    cols = {c.name: c for c in table.columns}
    assert cols["出生日期"].kind == "date"
    assert cols["出生日期"].formats[0] == "%d/%m/%Y"
    assert cols["身份证号"].shapes == [("9{18}", 30), ("9{17}A", 10)]
    assert cols["姓名"].shapes == [("CCC", 30), ("CCCC", 10)]
    assert cols["住院号"].distinct == 4
    assert cols["备注"].kind == "empty" and cols["备注"].null_rate == 1.0


def test_profile_output_holds_no_planted_values(export: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["profile", str(export)])
    assert printed.exit_code == 0, printed.output
    written = write_profile(profile_export(export), tmp_path / "out")
    texts = [printed.output] + [p.read_text(encoding="utf-8") for p in written.values()]
    for needle in NAMES + IDS + PHONES + MRNS + ["1961"]:
        assert not any(needle in text for text in texts), needle
    assert json.loads(texts[1])[0]["rows"] == 40


def test_draft_columns_yaml(export: Path, tmp_path: Path) -> None:
    written = write_profile(profile_export(export), tmp_path / "out")
    draft = yaml.safe_load(written["draft"].read_text(encoding="utf-8"))
    assert draft["新医院_患者"] == {
        "住院号": "mrn",
        "姓名": "name",
        "身份证号": "resident_id",
        "联系电话": "drop",
        "出生日期": {"to": "birth_date", "formats": ["%d/%m/%Y"]},
        "性别": {"to": "sex", "values": "sex"},
    }
    assert draft["value_maps"] == {"sex": {}}
    assert "# TODO" not in written["draft"].read_text(encoding="utf-8").split("住院号")[0]
