"""Staging: real messy east_liver rows become canonical, typed, coded, pseudonymised rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from transforms.errors import MappingError
from transforms.identity import pseudonymise
from transforms.mapping import load_site_mapping
from transforms.seen_rows import SeenRows
from transforms.standardize import standardize_table
from transforms.units import load_unit_table

ROOT = Path(__file__).resolve().parents[2]
KEY = b"test-key-" * 4


@pytest.fixture(scope="module")
def mapping():
    return load_site_mapping(ROOT / "mappings" / "east_liver")


def _stage(mapping, table: str, rows: dict[str, list[str]]):
    raw = pd.DataFrame(rows, dtype=object)
    raw["_source_row"] = range(1, len(raw) + 1)
    return standardize_table(
        raw,
        table,
        mapping,
        key=KEY,
        batch_id="b1",
        source_file=f"{table}.csv",
        units=load_unit_table(),
    )


LAB = {
    "住院号": ["EL1", "EL1", "EL2", "EL2", "EL3", "EL3"],
    "检验时间": [
        "2024-03-05 14:30",
        "2024/3/5 8:00",
        "20240305",
        "2024-13-45",
        "2024年3月5日",
        "2024年3月5日",
    ],
    "项目代码": ["AFP", "TBIL", "ALB", "XXX", "AFP", "AFP"],
    "项目名称": ["甲胎蛋白", "总胆红素", "白蛋白", "?", "甲胎蛋白", "甲胎蛋白"],
    "结果": ["100", "1", "3.5", "2", "7", "7"],
    "单位": ["IU/mL", "mg/dL", "g/dL", "U", "单位", "单位"],
}


def test_lab_values_units_codes_and_times(mapping) -> None:
    staged = _stage(mapping, "lab", LAB)
    frame = staged.frame
    assert staged.dropped == {"duplicate_row": 1}
    assert frame["_source_row"].tolist() == [1, 2, 3, 4, 5]
    assert frame["value"].tolist()[:3] == pytest.approx([121.0, 17.1, 35.0])
    assert frame["unit"].tolist()[:3] == ["ng/mL", "umol/L", "g/L"]
    assert frame["loinc_code"].tolist()[:3] == ["1834-1", "1975-2", "1751-7"]
    assert pd.isna(frame.loc[3, "loinc_code"])  # unknown local code: kept, unmapped
    assert frame.loc[3, "local_code"] == "XXX"
    assert pd.isna(frame.loc[4, "unit"]) and frame.loc[4, "source_unit"] == "单位"
    assert frame.loc[0, "collected_at"] == pd.Timestamp("2024-03-05 06:30", tz="UTC")
    assert frame.loc[2, "collected_at"] == pd.Timestamp("2024-03-04 16:00", tz="UTC")
    assert frame.loc[2, "collected_date"] == pd.Timestamp("2024-03-05")
    assert frame.loc[3, "_unparsed"] == "collected_at"
    assert frame["_unparsed"].isna().sum() == 4
    expected_key = pseudonymise(pd.Series(["EL1"], dtype="string"), KEY, "mrn:east_liver")[0]
    assert frame.loc[0, "patient_key"] == expected_key
    assert frame["_row_hash"].is_unique


PATIENTS = {
    "住院号": ["EL1", "EL2", "EL3"],
    "姓名": ["张三", "李四", "王五"],
    "性别": ["男", "X", "女"],
    "出生日期": ["1949年12月31日", "19600305", ""],
    "身份证号": ["11010519491231002X", "110105194912310021", ""],
    "联系电话": ["13800000000", "", "13900000000"],
    "家庭住址": ["某路1号", "", ""],
    "乙肝表面抗原": ["阳性", "", "阴性"],
    "丙肝抗体": ["阴性", "", ""],
    "死亡日期": ["", "2020/1/2", ""],
}


def test_patient_identity_and_no_direct_identifiers(mapping) -> None:
    frame = _stage(mapping, "patient", PATIENTS).frame
    assert frame["resident_id_valid"].tolist() == [True, False, pd.NA]
    assert (
        frame.loc[0, "person_key"]
        == pseudonymise(pd.Series(["11010519491231002X"], dtype="string"), KEY, "person")[0]
    )
    assert frame["person_key"].isna().tolist() == [False, True, True]
    assert frame["sex"].tolist()[::2] == ["male", "female"]
    assert frame.loc[1, "_unparsed"] == "sex"  # unknown local value is flagged, not guessed
    assert frame["birth_date"].tolist()[:2] == [
        pd.Timestamp("1949-12-31"),
        pd.Timestamp("1960-03-05"),
    ]
    assert pd.isna(frame.loc[2, "birth_date"]) and pd.isna(frame.loc[2, "_unparsed"])
    assert frame.loc[1, "death_date"] == pd.Timestamp("2020-01-02")
    assert frame["hbsag"].tolist() == ["positive", pd.NA, "negative"]
    text = frame.astype(str).to_csv()
    for phi in ("张三", "13800000000", "某路1号", "11010519491231002X", "EL1"):
        assert phi not in text


def test_missing_mapped_header_names_file_and_headers(mapping) -> None:
    rows = {k: v for k, v in LAB.items() if k != "单位"}
    with pytest.raises(MappingError, match=r"lab: column\(s\) \['单位'\] not found in lab.csv"):
        _stage(mapping, "lab", rows)


def test_duplicates_dropped_across_chunks_sharing_a_seen_set(mapping) -> None:
    raw = pd.DataFrame(LAB, dtype=object)
    raw["_source_row"] = range(1, len(raw) + 1)
    whole = _stage(mapping, "lab", LAB)
    seen = SeenRows()
    parts = []
    for start in range(0, len(raw), 5):  # the duplicate (rows 5 and 6) spans two chunks
        chunk = raw.iloc[start : start + 5].reset_index(drop=True)
        parts.append(
            standardize_table(
                chunk,
                "lab",
                mapping,
                key=KEY,
                batch_id="b1",
                source_file="lab.csv",
                units=load_unit_table(),
                seen=seen,
            )
        )
    assert [p.dropped for p in parts] == [{}, {"duplicate_row": 1}]
    joined = pd.concat([p.frame for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.frame)
    hashes = whole.frame["_row_hash"].tolist()
    assert len(seen) == len(hashes) and seen.contains(hashes).all()
