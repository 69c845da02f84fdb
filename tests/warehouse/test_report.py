"""The HTML report: offline (no external assets), expected sections, <5 suppression, KM maths."""

from __future__ import annotations

import re

import duckdb
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from tests.warehouse.core_tables import finding, make_core
from warehouse.cohorts import build_cohorts
from warehouse.report import (
    at_risk_counts,
    kaplan_meier,
    median_survival,
    render_report,
    survival_at,
    write_report,
)

# durations with ties, censoring at an event time, and a censored last observation
DURATIONS = [5, 8, 8, 12, 12, 12, 15, 20, 22, 30]
EVENTS = [1, 1, 0, 1, 1, 0, 0, 1, 0, 0]


def test_kaplan_meier_equals_lifelines() -> None:
    ours = kaplan_meier(pd.Series(DURATIONS), pd.Series(EVENTS))
    fitter = KaplanMeierFitter().fit(DURATIONS, EVENTS)
    theirs = fitter.survival_function_.iloc[:, 0]
    assert list(ours.index) == [float(t) for t in theirs.index]
    assert ours["survival"].to_numpy() == pytest.approx(theirs.to_numpy(), abs=1e-12)
    assert ours["at_risk"].tolist() == fitter.event_table["at_risk"].tolist()
    # by hand: S(5) = 9/10, S(8) = 0.9 * 8/9 = 0.8, S(12) = 0.8 * 5/7 (7 at risk, 2 deaths),
    # S(20) = S(12) * 2/3 (3 at risk) = 0.381 -> median 20
    assert ours.loc[12.0, "survival"] == pytest.approx(0.8 * 5 / 7)
    assert ours.loc[20.0, "survival"] == pytest.approx(0.8 * 5 / 7 * 2 / 3)
    assert median_survival(ours) == fitter.median_survival_time_ == 20.0
    assert survival_at(ours, 10) == pytest.approx(0.8)
    assert survival_at(ours, 31) is None


def test_median_not_reached() -> None:
    km = kaplan_meier(pd.Series([10, 20, 30]), pd.Series([1, 0, 0]))
    assert median_survival(km) is None


def test_at_risk_counts_are_suppressed() -> None:
    rows = at_risk_counts({"BCLC B": pd.Series([1, 2, 3, 4, 5, 6, 7.5])}, [0, 2, 3.5, 7])
    assert rows == {"BCLC B": ["7", "6", "<5", "<5"]}


def _warehouse() -> duckdb.DuckDBPyConnection:
    patients, conditions, observations = [], [], []
    # h1: 8 liver patients, BCLC B; 3 deaths. h2: 3 lung patients (a small cell everywhere).
    for i in range(8):
        pid = f"L{i}"
        patients.append({"patient_id": pid, "deceased_date": "2021-06-01" if i < 3 else None})
        conditions.append({"patient_id": pid, "icd10_code": "C22.0", "onset_date": "2020-01-01"})
        observations.append(finding(pid, "bclc-stage", "B", "2020-01-01"))
        observations.append(
            {
                "patient_id": pid,
                "code": "75186-7",
                "value_code": "438949009",
                "effective": f"202{1 + i % 3}-01-01",
            }
        )
    for i in range(3):
        pid = f"U{i}"
        patients.append({"patient_id": pid, "hospital": "h2"})
        conditions.append(
            {
                "patient_id": pid,
                "hospital": "h2",
                "icd10_code": "C34.1",
                "morphology_code": "8140/3",
                "onset_date": "2021-01-01",
            }
        )
    con = make_core(patient=patients, condition=conditions, observation=observations)
    build_cohorts(con)
    con.execute("CREATE SCHEMA gov")
    con.execute(
        """CREATE TABLE gov.load_run AS SELECT * FROM (VALUES
        ('h1', 'b1', 'success', TIMESTAMPTZ '2026-11-29 10:00:00+00', 'm', 120, 110, 8, 2, 300),
        ('h2', 'b2', 'success', TIMESTAMPTZ '2026-11-29 10:05:00+00', 'm', 40, 40, 0, 0, 90))
        t(hospital, batch_id, status, finished_at, mapping_version, "read", loaded, quarantined,
          dropped, resources)"""
    )
    con.execute(
        """CREATE TABLE gov.reconciliation AS SELECT * FROM (VALUES
        ('h1', 'b1', 'lab', 100, 98, 8, 2, '{}', 90, true))
        t(hospital, batch_id, "table", "read", staged, quarantined, dropped, dropped_by_reason,
          loaded, balanced)"""
    )
    con.execute(
        """CREATE TABLE gov.dq_result AS SELECT * FROM (VALUES
        ('h1', 'b1', 'lab', 'lab.range_afp', 'plausibility', 'quarantine', 100, 7, 0.93, false,
         'AFP outside range', '2026-11-29'),
        ('h1', 'b1', 'lab', 'lab.unit_known', 'conformance', 'quarantine', 100, 1, 0.99, false,
         'Unit known', '2026-11-29'))
        t(hospital, batch_id, "table", check_id, category, severity, evaluated, failed,
          pass_rate, success, explanation, run_at)"""
    )
    return con


@pytest.fixture(scope="module")
def report_html() -> str:
    con = _warehouse()
    try:
        return render_report(con)
    finally:
        con.close()


def test_report_has_no_external_assets(report_html) -> None:
    assert not re.search(r"<script[^>]*\bsrc\s*=", report_html, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=", report_html, re.I)
    assert not re.search(r"<img[^>]*\bsrc\s*=\s*[\"']?https?:", report_html, re.I)
    assert not re.search(r"url\(\s*[\"']?https?:", report_html, re.I)
    assert "http://" not in report_html and "https://" not in report_html


def test_report_sections_and_figures(report_html) -> None:
    for anchor in ("loads", "reconciliation", "dq", "cohorts", "survival"):
        assert f'<section id="{anchor}">' in report_html
    for title in (
        "Liver cancer: overall survival by BCLC stage",
        "Lung cancer: overall survival by EGFR status",
    ):
        assert title in report_html
    assert report_html.count('src="data:image/png;base64,') == 2
    assert "lab.range_afp" in report_html


def test_report_suppresses_small_cells(report_html) -> None:
    cohorts = report_html.split('<section id="cohorts">')[1].split("</section>")[0]
    h2_row = cohorts.split("<td>h2</td>")[1].split("</tr>")[0]
    assert "&lt;5" in h2_row  # 3 lung patients
    h1_row = cohorts.split("<td>h1</td>")[1].split("</tr>")[0]
    assert '<td class="num">8</td>' in h1_row
    dq = report_html.split('<section id="dq">')[1].split("</section>")[0]
    assert '<td class="num">7</td>' in dq and '<td class="num">1</td>' not in dq
    # no bare count under 5 anywhere in a count cell
    assert not re.search(r'<td class="num">[0-4]</td>', report_html)
    survival = report_html.split('<section id="survival">')[1]
    assert "<td>EGFR not tested</td>" in survival
    assert "not estimated (under 5 patients)" in survival


def test_write_report_needs_a_warehouse(tmp_path) -> None:
    from pipeline.settings import load_settings
    from transforms.errors import ConfigError

    settings = load_settings({"WALNUT_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="walnut build"):
        write_report(settings)
