"""`walnut check-mapping`: mapping vs export headers, folder and glob checks, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from transforms.mapping import load_site_mapping
from transforms.onboarding.check import check_mapping
from transforms.onboarding.unmapped import collect_unmapped_codes

ROOT = Path(__file__).resolve().parents[3]
HEADERS = {
    "患者.csv": "住院号,姓名,性别,出生日期,身份证号,联系电话,家庭住址,乙肝表面抗原,丙肝抗体,"
    "死亡日期",
    "诊断.csv": "住院号,诊断日期,诊断编码,诊断名称,病理形态,BCLC分期,CNLC分期,Child-Pugh分级,腹水,"
    "肝性脑病,ECOG",
    "检验.csv": "住院号,检验时间,项目代码,项目名称,结果,单位",
    "治疗.csv": "住院号,开始日期,结束日期,治疗代码,治疗名称,治疗类别",
    "随访.csv": "住院号,随访日期,生存状态,死亡日期",
}


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "sources" / "east_liver"
    folder.mkdir(parents=True)
    for name, header in HEADERS.items():
        (folder / name).write_bytes((header + "\n").encode("gb18030"))
    return folder


def test_matching_exports_pass(sources: Path) -> None:
    report = check_mapping(ROOT / "mappings" / "east_liver", sources)
    assert report.ok and report.errors == [] and report.warnings == []
    assert report.files_checked == 5 and report.unmapped == {}


def test_missing_and_extra_columns(sources: Path) -> None:
    (sources / "检验.csv").write_bytes(
        "住院号,检验时间,项目代码,项目名称,结果,单位名称,备注\n".encode()
    )
    report = check_mapping(ROOT / "mappings" / "east_liver", sources)
    assert report.errors == [
        "lab: 检验.csv: mapped column(s) ['单位'] not in the export; its columns are "
        "['住院号', '检验时间', '项目代码', '项目名称', '结果', '单位名称', '备注']"
    ]
    assert report.unmapped == {"lab": ["单位名称", "备注"]}


def test_glob_matching_nothing_is_an_error(sources: Path) -> None:
    (sources / "随访.csv").unlink()
    report = check_mapping(ROOT / "mappings" / "east_liver", sources)
    assert report.errors == [
        "source.yaml: followup: files '随访*.csv' match nothing in east_liver/"
    ]


def test_absent_folder_is_only_a_warning(tmp_path: Path) -> None:
    report = check_mapping(ROOT / "mappings" / "east_liver", tmp_path / "nowhere")
    assert report.ok
    assert report.warnings[0].startswith(f"source folder {tmp_path / 'nowhere'} not found")


def test_cli_exit_codes(sources: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings" / "east_liver", mappings / "east_liver")
    monkeypatch.setenv("WALNUT_MAPPINGS", str(mappings))
    monkeypatch.setenv("WALNUT_SOURCES", str(sources.parent))
    runner = CliRunner()
    ok = runner.invoke(app, ["check-mapping", "east_liver"])
    assert ok.exit_code == 0 and "east_liver: mapping OK (5 export(s) compared)" in ok.output
    columns = mappings / "east_liver" / "columns.yaml"
    columns.write_text(
        columns.read_text(encoding="utf-8").replace("结果: source_value", "结果: value_x"),
        encoding="utf-8",
    )
    bad = runner.invoke(app, ["check-mapping", "east_liver"])
    assert bad.exit_code == 2
    assert "unknown canonical column 'value_x'" in bad.output


def test_unmapped_codes_counts_without_phi(tmp_path: Path) -> None:
    mapping = load_site_mapping(ROOT / "mappings" / "east_liver")
    staging, landing = tmp_path / "staging", tmp_path / "landing"
    (staging / "lab").mkdir(parents=True)
    for batch, codes in (
        ("20260101T000000Z-a", ["ZZZ9", "AFP", "ZZZ9"]),
        ("20260102T000000Z-b", ["ZZZ9", "QQ1"]),
    ):
        pd.DataFrame(
            {
                "patient_key": ["p"] * len(codes),
                "local_code": codes,
                "loinc_code": ["1834-1" if c == "AFP" else None for c in codes],
                "_source_file": ["检验.csv"] * len(codes),
            }
        ).to_parquet(staging / "lab" / f"{batch}.parquet")
    codes = collect_unmapped_codes(mapping, staging, landing)
    assert codes.to_dict("records") == [
        {
            "table": "lab",
            "source": "lab",
            "local_code": "ZZZ9",
            "rows": 3,
            "first_batch": "20260101T000000Z-a",
            "last_batch": "20260102T000000Z-b",
        },
        {
            "table": "lab",
            "source": "lab",
            "local_code": "QQ1",
            "rows": 1,
            "first_batch": "20260102T000000Z-b",
            "last_batch": "20260102T000000Z-b",
        },
    ]
    assert "patient_key" not in codes.columns
