"""Mapping files: the real east_liver mapping loads; each mistake class gives an exact message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from transforms.errors import MappingError
from transforms.mapping import load_site_mapping

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    folder = tmp_path / "east_liver"
    shutil.copytree(ROOT / "mappings" / "east_liver", folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_east_liver_mapping_loads() -> None:
    mapping = load_site_mapping(ROOT / "mappings" / "east_liver")
    assert mapping.hospital == "east_liver"
    assert mapping.timezone == "Asia/Shanghai"
    assert {s.table for s in mapping.sources} == {
        "patient",
        "diagnosis",
        "lab",
        "treatment",
        "followup",
    }
    assert mapping.tables["lab"].columns["结果"].to == "source_value"
    assert mapping.tables["patient"].columns["联系电话"].drop
    assert mapping.code_maps["lab"]["AFP"][0].code == "1834-1"
    assert mapping.value_maps["sex"]["男"] == "male"
    assert len(mapping.version) == 16


def test_version_changes_with_any_file(site: Path) -> None:
    before = load_site_mapping(site).version
    _edit(site / "codes" / "lab.csv", "Alpha-1-Fetoprotein", "AFP")
    assert load_site_mapping(site).version != before


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "columns.yaml",
            "结果: source_value",
            "结果: source_valu",
            "east_liver/columns.yaml: lab.结果: unknown canonical column 'source_valu'",
        ),
        (
            "columns.yaml",
            "单位: source_unit",
            "单位: source_value",
            "east_liver/columns.yaml: lab.单位: duplicate mapping to 'source_value' "
            "(already mapped from '结果')",
        ),
        (
            "columns.yaml",
            "{to: sex, values: sex}",
            "{to: sex, values: gender}",
            "east_liver/columns.yaml: patient.性别: "
            "value map 'gender' is not defined under value_maps",
        ),
        (
            "columns.yaml",
            "{to: local_code, codes: lab}",
            "{to: local_code, codes: labs}",
            "east_liver/columns.yaml: lab.项目代码: codes/labs.csv not found",
        ),
        (
            "source.yaml",
            "timezone: Asia/Shanghai",
            "timezone: Asia/Peking",
            "east_liver/source.yaml: timezone: Value error, unknown time zone 'Asia/Peking'",
        ),
        (
            "source.yaml",
            "{table: lab, kind: csv",
            "{table: labs, kind: csv",
            "east_liver/source.yaml: sources.2.csv.table: "
            "Value error, unknown canonical table 'labs'",
        ),
        (
            "source.yaml",
            "hospital: east_liver",
            "hospital: west_liver",
            "east_liver/source.yaml: hospital: 'west_liver' must equal the folder name",
        ),
        (
            "codes/lab.csv",
            "AFP,http://loinc.org",
            "AFP,http://loinc.org/",
            "east_liver/codes/lab.csv: line 2: unknown code system 'http://loinc.org/'",
        ),
        (
            "codes/lab.csv",
            "TBIL,http://loinc.org",
            "AFP,http://loinc.org",
            "east_liver/codes/lab.csv: line 3: duplicate mapping of 'AFP' to http://loinc.org",
        ),
    ],
)
def test_mistakes_name_file_key_and_expectation(
    site: Path, file: str, old: str, new: str, message: str
) -> None:
    _edit(site / file, old, new)
    with pytest.raises(MappingError) as caught:
        load_site_mapping(site)
    assert str(caught.value).startswith(message)


def test_missing_file(site: Path) -> None:
    (site / "columns.yaml").unlink()
    with pytest.raises(MappingError, match=r"^columns.yaml: file not found in east_liver/$"):
        load_site_mapping(site)


def test_table_without_mrn(site: Path) -> None:
    _edit(site / "columns.yaml", "  住院号: mrn\n  随访日期", "  住院号: drop\n  随访日期")
    with pytest.raises(MappingError, match="followup: no column maps to 'mrn'"):
        load_site_mapping(site)
