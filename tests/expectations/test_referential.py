"""Cross-table checks: unknown patients and temporal order against the patient's record."""

from __future__ import annotations

import pandas as pd

from expectations.referential import check_event_dates, check_patient_known

PATIENTS = pd.DataFrame(
    {
        "patient_key": ["p1", "p2"],
        "birth_date": pd.to_datetime(["1950-01-01", "1960-06-15"]).astype("datetime64[ms]"),
        "death_date": pd.to_datetime(["2020-05-01", None]).astype("datetime64[ms]"),
    }
)


def _labs(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_key": [p for p, _ in rows],
            "collected_date": pd.to_datetime([d for _, d in rows]).astype("datetime64[ms]"),
            "_row_hash": [f"h{i}" for i in range(len(rows))],
        }
    )


def test_known_good_rows_pass() -> None:
    frame = _labs([("p1", "2019-03-05"), ("p2", "2024-01-01"), ("p1", "2020-05-01")])
    results = check_event_dates("lab", frame, PATIENTS)
    assert [(r.check_id, r.evaluated, r.failed, f) for r, f in results] == [
        ("lab.after_birth", 3, 0, []),
        ("lab.not_after_death", 2, 0, []),
    ]
    known, orphans = check_patient_known("lab", frame, set(PATIENTS["patient_key"]))
    assert (known.failed, orphans) == (0, [])


def test_known_bad_rows_fail_by_rule() -> None:
    frame = _labs([("p1", "1949-12-31"), ("p1", "2020-05-02"), ("p3", "2021-01-01")])
    after_birth, after_death = check_event_dates("lab", frame, PATIENTS)
    assert after_birth[0].check_id == "lab.after_birth" and after_birth[1] == ["h0"]
    assert after_death[0].check_id == "lab.not_after_death" and after_death[1] == ["h1"]
    assert after_birth[0].category == "plausibility" and after_birth[0].severity == "quarantine"
    known, orphans = check_patient_known("lab", frame, set(PATIENTS["patient_key"]))
    assert known.check_id == "lab.patient_known" and orphans == ["h2"]


def test_followup_after_death_is_allowed() -> None:
    frame = pd.DataFrame(
        {
            "patient_key": ["p1"],
            "contact_date": pd.to_datetime(["2021-01-01"]).astype("datetime64[ms]"),
            "_row_hash": ["f0"],
        }
    )
    results = check_event_dates("followup", frame, PATIENTS)
    assert [r.check_id for r, _ in results] == ["followup.after_birth"]
    assert results[0][1] == []


def test_patient_known_on_arrow_strings_with_nulls_and_no_known_patients() -> None:
    frame = pd.DataFrame(
        {
            "patient_key": pd.array(["p1", None, "p9", "p2"], dtype="string[pyarrow]"),
            "_row_hash": ["a", "b", "c", "d"],
        }
    )
    known, orphans = check_patient_known("lab", frame, {"p1", "p2", "p3"})
    assert (known.evaluated, known.failed, orphans) == (3, 1, ["c"])
    nobody, all_orphans = check_patient_known("lab", frame, set())
    assert (nobody.evaluated, all_orphans) == (3, ["a", "c", "d"])
