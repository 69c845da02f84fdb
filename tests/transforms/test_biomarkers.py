"""Biomarker result normalisation, its staging hook, and the biomarker validation suite."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from transforms.biomarkers import (
    ALK_LOINC,
    EGFR_LOINC,
    KRAS_LOINC,
    PDL1_TPS_LOINC,
    ROS1_LOINC,
    TPS_BELOW_ONE,
    normalise_biomarker_results,
)
from transforms.mapping import load_site_mapping
from transforms.standardize import standardize_table
from transforms.units import load_unit_table

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
VALUE_MAP = {"阳性": "positive", "阴性": "negative", "野生型": "negative"}


def _one(text: str | None, loinc: str | None) -> tuple[object, object, bool]:
    parsed = normalise_biomarker_results(
        pd.Series([text], dtype="string"), pd.Series([loinc], dtype="string"), VALUE_MAP
    )
    return parsed.result.iloc[0], parsed.tps_percent.iloc[0], bool(parsed.unparsed.iloc[0])


@pytest.mark.parametrize(
    ("text", "loinc", "result"),
    [
        ("19外显子缺失", EGFR_LOINC, "exon19del"),
        ("19号外显子缺失", EGFR_LOINC, "exon19del"),
        ("外显子19缺失", EGFR_LOINC, "exon19del"),
        ("19del", EGFR_LOINC, "exon19del"),
        ("EGFR 19-del", EGFR_LOINC, "exon19del"),
        ("exon 19 deletion", EGFR_LOINC, "exon19del"),
        ("Ex19Del", EGFR_LOINC, "exon19del"),
        ("L858R", EGFR_LOINC, "L858R"),
        ("21外显子L858R突变", EGFR_LOINC, "L858R"),
        ("p.Leu858Arg", EGFR_LOINC, "L858R"),
        ("T790M", EGFR_LOINC, "T790M"),
        ("ｔ７９０ｍ", EGFR_LOINC, "T790M"),  # full-width, folded by NFKC
        ("阴性", EGFR_LOINC, "negative"),
        (" 野生型 ", EGFR_LOINC, "negative"),
        ("阳性", ALK_LOINC, "positive"),
        ("阴性", ROS1_LOINC, "negative"),
        ("G12C", KRAS_LOINC, "G12C"),
        ("p.G12C", KRAS_LOINC, "G12C"),
    ],
)
def test_result_text_normalised(text: str, loinc: str, result: str) -> None:
    assert _one(text, loinc) == (result, pytest.approx(float("nan"), nan_ok=True), False)


@pytest.mark.parametrize(
    ("text", "tps"),
    [
        ("55%", 55.0),
        ("TPS 55%", 55.0),
        ("TPS：55 ％", 55.0),
        ("PD-L1 TPS=80%", 80.0),
        ("0%", 0.0),
        ("1%", 1.0),
        ("12.5%", 12.5),
        ("55", 55.0),
        ("<1%", TPS_BELOW_ONE),
        ("＜1％", TPS_BELOW_ONE),
        ("150%", 150.0),  # parsed; the suite's tps_range check quarantines it
    ],
)
def test_pdl1_tps_parsed(text: str, tps: float) -> None:
    result, value, unparsed = _one(text, PDL1_TPS_LOINC)
    assert result is pd.NA and value == tps and not unparsed


@pytest.mark.parametrize(
    ("text", "loinc"),
    [
        ("19del + T790M", EGFR_LOINC),  # two variants in one cell: ambiguous
        ("见报告", EGFR_LOINC),
        ("55%", EGFR_LOINC),  # a score on a gene test
        ("阴性", PDL1_TPS_LOINC),  # PD-L1 needs a score
        ("<5%", PDL1_TPS_LOINC),  # a band with no single value
        ("≥50%", PDL1_TPS_LOINC),
        ("1-49%", PDL1_TPS_LOINC),
    ],
)
def test_unknown_text_is_flagged_unparsed(text: str, loinc: str) -> None:
    result, tps, unparsed = _one(text, loinc)
    assert result is pd.NA and pd.isna(tps) and unparsed


def test_blank_is_missing_not_unparsed() -> None:
    result, tps, unparsed = _one("  ", EGFR_LOINC)
    assert result is pd.NA and pd.isna(tps) and not unparsed


def test_unmapped_test_tries_every_rule() -> None:
    assert _one("L858R", None)[0] == "L858R"
    assert _one("30%", None)[1] == 30.0
    assert _one("阴性", None)[0] == "negative"


def test_empty_series() -> None:
    parsed = normalise_biomarker_results(
        pd.Series([], dtype="string"), pd.Series([], dtype="string"), VALUE_MAP
    )
    assert parsed.result.empty and parsed.tps_percent.empty and parsed.unparsed.empty


def _stage(rows: list[list[str]]) -> pd.DataFrame:
    mapping = load_site_mapping(MAPPINGS / "north_chest")
    raw = pd.DataFrame(rows, columns=["病案号", "检测日期", "检测项目", "结果"], dtype=object)
    raw["_source_row"] = range(1, len(rows) + 1)
    staged = standardize_table(
        raw,
        "biomarker",
        mapping,
        key=b"k" * 32,
        batch_id="b1",
        source_file="x.xlsx#病理",
        units=load_unit_table(),
    )
    return staged.frame


def test_staging_fills_loinc_result_and_tps() -> None:
    frame = _stage(
        [
            ["NC1", "2024-03-05", "EGFR", "19外显子缺失"],
            ["NC1", "2024-03-05", "ALK", "阳性"],
            ["NC1", "2024-03-05", "PD-L1", "<1%"],
            ["NC1", "2024-03-05", "EGFR", "见报告"],
        ]
    )
    assert frame["loinc_code"].tolist() == [EGFR_LOINC, ALK_LOINC, PDL1_TPS_LOINC, EGFR_LOINC]
    assert frame["result"].tolist()[:2] == ["exon19del", "positive"]
    assert frame["tps_percent"].iloc[2] == TPS_BELOW_ONE
    assert frame["_unparsed"].isna().tolist() == [True, True, True, False]
    assert frame["_unparsed"].iloc[3] == "result"
    assert frame["test_date"].iloc[0] == pd.Timestamp("2024-03-05")


def test_suite_passes_good_rows_and_quarantines_bad_ones() -> None:
    from expectations.runner import validate_frame

    frame = _stage(
        [
            ["NC1", "2024-03-05", "EGFR", "L858R"],  # good
            ["NC1", "2024-03-05", "PD-L1", "60%"],  # good
            ["NC1", "2024-03-05", "EGFR", "G12C"],  # KRAS finding on an EGFR test
            ["NC1", "2024-03-05", "PD-L1", "150%"],  # score above 100
            ["NC1", "2034-03-05", "ALK", "阴性"],  # future test date
            ["NC1", "2024-03-05", "BRAF", "阴性"],  # unmapped local code
            ["NC1", "2024-03-05", "ROS1", "见报告"],  # unparseable result
            ["NC1", "2024-03-05", "KRAS", None],  # blank result
        ]
    )
    outcome = validate_frame("biomarker", frame, run_date=dt.date(2026, 1, 1))
    assert not outcome.critical_failures
    by_row = {
        int(frame.loc[frame["_row_hash"] == h, "_source_row"].iloc[0]): set(ids)
        for h, ids in outcome.failed_rows.items()
    }
    assert 1 not in by_row and 2 not in by_row
    assert "biomarker.egfr_result_in_set" in by_row[3]
    assert "biomarker.tps_range" in by_row[4]
    assert "biomarker.test_date_not_future" in by_row[5]
    assert "biomarker.code_mapped" in by_row[6]
    assert "biomarker.values_parseable" in by_row[7]
    assert "biomarker.result_not_null" in by_row[8]
