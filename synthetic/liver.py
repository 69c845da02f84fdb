"""Liver-cancer courses: HCC/ICC staging, liver labs and plausible lines of therapy."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

from synthetic.course import (
    Course,
    LabDraw,
    TreatmentEvent,
    clip_treatments,
    draw_diagnosis_date,
    draw_time,
    plan_followup,
    plan_lab_days,
)

BCLC_STAGES = ("0", "A", "B", "C", "D")
_BCLC_WEIGHTS = (5, 25, 25, 35, 10)
_DEATH_PROBABILITY = {"0": 0.05, "A": 0.12, "B": 0.28, "C": 0.45, "D": 0.6}
_CNLC_BY_BCLC = {
    "0": ("Ia",),
    "A": ("Ib", "IIa"),
    "B": ("IIb", "IIIa"),
    "C": ("IIIa", "IIIb"),
    "D": ("IV",),
}
# Per Child-Pugh class: (bilirubin umol/L, albumin g/L, INR) uniform ranges.
_LIVER_FUNCTION = {
    "A": ((6.0, 30.0), (35.0, 46.0), (0.9, 1.3)),
    "B": ((25.0, 50.0), (28.0, 36.0), (1.2, 1.8)),
    "C": ((40.0, 120.0), (21.0, 29.0), (1.7, 2.6)),
}
LIVER_LAB_CODES = ("AFP", "TBIL", "ALB", "INR", "PLT", "ALT", "AST", "CREA")


def build_liver_course(rng: random.Random, dies: bool | None = None) -> Course:
    """One HCC (85 %) or ICC patient from diagnosis to death or last contact."""
    subtype = "HCC" if rng.random() < 0.85 else "ICC"
    diagnosis = draw_diagnosis_date(rng)
    bclc = rng.choices(BCLC_STAGES, _BCLC_WEIGHTS)[0]
    child_pugh = "C" if bclc == "D" else rng.choices(("A", "B"), (75, 25))[0]
    stage = {
        "bclc": bclc,
        "cnlc": rng.choice(_CNLC_BY_BCLC[bclc]),
        "child_pugh": child_pugh,
        "ascites": {"A": "无", "B": rng.choice(("无", "轻度")), "C": "中重度"}[child_pugh],
        "encephalopathy": {"A": "无", "B": "无", "C": rng.choice(("无", "1-2级", "3-4级"))}[
            child_pugh
        ],
        "ecog": str(
            {
                "0": 0,
                "A": rng.randint(0, 1),
                "B": rng.randint(0, 1),
                "C": rng.randint(1, 2),
                "D": rng.randint(3, 4),
            }[bclc]
        ),
    }
    contacts, death = plan_followup(rng, diagnosis, _DEATH_PROBABILITY[bclc], dies)
    hbsag = rng.choices(("阳性", "阴性", None), (65, 28, 7))[0]
    course = Course(
        cancer="liver",
        subtype=subtype,
        diagnosis_date=diagnosis,
        stage=stage,
        contacts=contacts,
        death_date=death,
        hbsag=hbsag,
        hcv_ab=rng.choices(("阳性", "阴性", None), (8, 82, 10))[0],
    )
    if rng.random() < 0.6:
        course.comorbidities.append(("CIR", diagnosis - timedelta(days=rng.randint(0, 400))))
    if hbsag == "阳性" and rng.random() < 0.8:
        course.comorbidities.append(("HBV", diagnosis - timedelta(days=rng.randint(0, 2000))))
    course.labs = [
        draw_liver_labs(rng, day, subtype, child_pugh) for day in plan_lab_days(rng, course)
    ]
    course.treatments = clip_treatments(
        plan_liver_treatments(rng, diagnosis, bclc), course.last_contact
    )
    return course


def draw_liver_labs(rng: random.Random, day: date, subtype: str, child_pugh: str) -> LabDraw:
    """One liver panel in canonical units; AFP is log-normal, often above 400 ng/mL in HCC."""
    bili, alb, inr = _LIVER_FUNCTION[child_pugh]
    mu, sigma = (math.log(80.0), 2.0) if subtype == "HCC" else (math.log(5.0), 0.6)
    values = {
        "AFP": min(max(rng.lognormvariate(mu, sigma), 0.8), 80000.0),
        "TBIL": rng.uniform(*bili),
        "ALB": rng.uniform(*alb),
        "INR": rng.uniform(*inr),
        "PLT": float(rng.randint(45, 320)),
        "ALT": float(rng.randint(12, 160)),
        "AST": float(rng.randint(15, 200)),
        "CREA": float(rng.randint(48, 115)),
    }
    return LabDraw(draw_time(rng, day), values)


def plan_liver_treatments(rng: random.Random, diagnosis: date, bclc: str) -> list[TreatmentEvent]:
    """Stage-driven plan: curative procedure, TACE, then systemic lines with gaps and switches."""
    events: list[TreatmentEvent] = []
    day = diagnosis + timedelta(days=rng.randint(5, 30))
    if bclc in ("0", "A"):
        events.append(TreatmentEvent(rng.choice(("RES", "RES", "RFA")), day, None))
        if rng.random() > 0.35:
            return events
        day += timedelta(days=rng.randint(240, 900))  # recurrence
    if bclc in ("0", "A", "B"):
        for _ in range(rng.randint(1, 4)):
            events.append(TreatmentEvent("TACE", day, None))
            day += timedelta(days=rng.randint(42, 90))
        if rng.random() < 0.5:
            return events
        day += timedelta(days=rng.randint(30, 180))
    if bclc == "D":
        return events
    first_line = rng.choices((("ATZ", "BEV"), ("SOR",), ("LEN",)), (40, 30, 30))[0]
    end = day + timedelta(days=rng.randint(60, 420))
    events.extend(TreatmentEvent(code, day, end) for code in first_line)
    if rng.random() < 0.55:
        day = end + timedelta(days=rng.randint(14, 90))
        second = "SOR" if first_line == ("LEN",) else "LEN"
        events.append(TreatmentEvent(second, day, day + timedelta(days=rng.randint(45, 300))))
    return events
