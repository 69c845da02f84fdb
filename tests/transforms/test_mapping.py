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
        (
            "source.yaml",
            "{table: lab, kind: csv",
            "{table: lab, kind: parquet",
            "east_liver/source.yaml: sources.2.kind: unknown source kind 'parquet'; "
            "expected one of ['csv', 'excel', 'sql', 'hl7v2', 'fhir']",
        ),
        (
            "columns.yaml",
            "  检验时间: collected_at",
            "  检验时间: {to: collected_at, formats: ['%d/%m %H:%M']}",
            "east_liver/columns.yaml: lab.检验时间: formats: '%d/%m %H:%M' has no year; "
            "expected a strptime pattern with %Y (or %y), e.g. '%d/%m/%Y'",
        ),
        (
            "columns.yaml",
            "  检验时间: collected_at",
            "  检验时间: {to: collected_at, formats: ['%d/%m/%Q']}",
            "east_liver/columns.yaml: lab.检验时间: formats: '%d/%m/%Q' has unknown "
            "directive(s) ['%Q']; expected strptime directives such as %Y %m %d %H %M %S",
        ),
        (
            "columns.yaml",
            "  检验时间: collected_at",
            "  检验时间: {to: collected_at, formats: '%d/%m/%Y'}",
            "east_liver/columns.yaml: lab.检验时间: formats: expected a list of strptime "
            "patterns, e.g. ['%d/%m/%Y']",
        ),
        (
            "columns.yaml",
            "  结果: source_value",
            "  结果: {to: source_value, formats: ['%Y-%m-%d']}",
            "east_liver/columns.yaml: lab.结果: formats: only date and timestamp columns take "
            "formats; 'source_value' is float",
        ),
        (
            "columns.yaml",
            "sex: {男: male, 女: female, 未知: unknown}",
            "sex: [male, female, unknown]",
            "east_liver/columns.yaml: value_maps.sex: expected a mapping of source value -> "
            "canonical value, got a list",
        ),
        (
            "columns.yaml",
            "sex: {男: male, 女: female, 未知: unknown}",
            "sex: {1: male, 2: female}",
            "east_liver/columns.yaml: value_maps.sex: entry 1: expected text -> text "
            '(quote numbers and yes/no in YAML, e.g. "1": male)',
        ),
        (
            "columns.yaml",
            "value_maps:",
            "constants:\n  treatment: {category: procedure}\nvalue_maps:",
            "east_liver/columns.yaml: constants.treatment.category: duplicate mapping to "
            "'category' (already mapped from '治疗类别')",
        ),
        (
            "columns.yaml",
            "value_maps:",
            "constants:\n  lab: {value: '1'}\nvalue_maps:",
            "east_liver/columns.yaml: constants.lab.value: not a text column of lab; expected "
            "one of ['local_code', 'loinc_code', 'loinc_display', 'source_unit', 'unit']",
        ),
        (
            "columns.yaml",
            "value_maps:",
            "constants:\n  labs: {unit: g/L}\nvalue_maps:",
            "east_liver/columns.yaml: constants.labs: no source of that name in source.yaml; "
            "expected one of ['diagnosis', 'followup', 'lab', 'patient', 'treatment']",
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


@pytest.mark.parametrize(
    ("hospital", "old", "new", "message"),
    [
        (
            "north_chest",
            "sheet: 患者, header_row: 2",
            "sheet: 患者, header_row: 0",
            "north_chest/source.yaml: sources.0.excel.header_row: Input should be greater than "
            "or equal to 1, got 0 (1-based row of the column headers)",
        ),
        (
            "south_general",
            "    key_column: pat_id\n",
            "",
            "south_general/source.yaml: sources.0.sql.key_column: required key is missing "
            "(the table's primary key column, which names rows in deletions and replays)",
        ),
    ],
)
def test_source_kind_mistakes(
    tmp_path: Path, hospital: str, old: str, new: str, message: str
) -> None:
    folder = tmp_path / hospital
    shutil.copytree(ROOT / "mappings" / hospital, folder)
    _edit(folder / "source.yaml", old, new)
    with pytest.raises(MappingError) as caught:
        load_site_mapping(folder)
    assert str(caught.value) == message


def test_constants_feed_every_row_of_their_source() -> None:
    mapping = load_site_mapping(ROOT / "mappings" / "south_general")
    assert mapping.constants == {
        "drug": {"category": "medication"},
        "surgery": {"category": "procedure"},
    }
    assert load_site_mapping(ROOT / "mappings" / "north_chest").constants == {
        "treatment": {"category": "medication"}
    }


def test_missing_source_yaml(site: Path) -> None:
    (site / "source.yaml").unlink()
    with pytest.raises(MappingError, match=r"^source.yaml: file not found in east_liver/$"):
        load_site_mapping(site)


def test_missing_file(site: Path) -> None:
    (site / "columns.yaml").unlink()
    with pytest.raises(MappingError, match=r"^columns.yaml: file not found in east_liver/$"):
        load_site_mapping(site)


def test_table_without_mrn(site: Path) -> None:
    _edit(site / "columns.yaml", "  住院号: mrn\n  随访日期", "  住院号: drop\n  随访日期")
    with pytest.raises(MappingError, match="followup: no column maps to 'mrn'"):
        load_site_mapping(site)
