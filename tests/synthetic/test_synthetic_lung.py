"""AJCC 8th lung stage grouping and lung courses."""

from __future__ import annotations

import random

import pytest

from synthetic.lung import build_lung_course, stage_group


@pytest.mark.parametrize(
    ("t", "n", "m", "group"),
    [
        ("T1a", "N0", "M0", "IA1"), ("T1c", "N0", "M0", "IA3"), ("T2a", "N0", "M0", "IB"),
        ("T2b", "N0", "M0", "IIA"), ("T3", "N0", "M0", "IIB"), ("T1b", "N1", "M0", "IIB"),
        ("T4", "N1", "M0", "IIIA"), ("T2a", "N2", "M0", "IIIA"), ("T3", "N2", "M0", "IIIB"),
        ("T1a", "N3", "M0", "IIIB"), ("T4", "N3", "M0", "IIIC"), ("T1a", "N0", "M1a", "IVA"),
        ("T2b", "N2", "M1b", "IVA"), ("T4", "N3", "M1c", "IVB"),
    ],
)
def test_stage_group(t: str, n: str, m: str, group: str) -> None:
    assert stage_group(t, n, m) == group


def test_egfr_positive_patients_get_osimertinib() -> None:
    seen = 0
    for i in range(300):
        course = build_lung_course(random.Random(i))
        egfr = [b.result for b in course.biomarkers if b.test == "EGFR"]
        advanced = course.stage["group"].startswith(("III", "IV"))
        if egfr and egfr[0] != "阴性" and advanced and course.treatments:
            assert course.treatments[0].code == "OSI"
            seen += 1
        assert all(e.end is None or e.end >= e.start for e in course.treatments)
        assert course.contacts == sorted(set(course.contacts))
    assert seen > 10
