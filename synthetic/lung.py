"""Lung-cancer courses: AJCC 8th TNM and stage group, biomarkers, CEA and targeted/chemo lines."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta

from synthetic.course import (
    Biomarker,
    Course,
    LabDraw,
    TreatmentEvent,
    clip_treatments,
    draw_diagnosis_date,
    draw_time,
    plan_followup,
    plan_lab_days,
)

T_CATEGORIES = ("T1a", "T1b", "T1c", "T2a", "T2b", "T3", "T4")
N_CATEGORIES = ("N0", "N1", "N2", "N3")
M_CATEGORIES = ("M0", "M1a", "M1b", "M1c")
_N0_GROUPS = {
    "T1a": "IA1",
    "T1b": "IA2",
    "T1c": "IA3",
    "T2a": "IB",
    "T2b": "IIA",
    "T3": "IIB",
    "T4": "IIIA",
}
_CEA = {"ADC": (math.log(8.0), 1.2), "SCC": (math.log(4.0), 0.8), "SCLC": (math.log(3.0), 0.8)}


def stage_group(t: str, n: str, m: str) -> str:
    """AJCC 8th edition lung stage group from T, N and M categories."""
    if m in ("M1a", "M1b"):
        return "IVA"
    if m == "M1c":
        return "IVB"
    small = t.startswith(("T1", "T2"))
    if n == "N0":
        return _N0_GROUPS[t]
    if n == "N1":
        return "IIB" if small else "IIIA"
    if n == "N2":
        return "IIIA" if small else "IIIB"
    return "IIIB" if small else "IIIC"


def build_lung_course(rng: random.Random, dies: bool | None = None) -> Course:
    """One NSCLC (adenocarcinoma, squamous) or small-cell patient, most diagnosed late."""
    subtype = rng.choices(("ADC", "SCC", "SCLC"), (60, 25, 15))[0]
    diagnosis = draw_diagnosis_date(rng)
    t = rng.choice(T_CATEGORIES)
    n = rng.choices(N_CATEGORIES, (40, 15, 30, 15))[0]
    m = rng.choices(M_CATEGORIES, (50, 15, 15, 20))[0]
    group = stage_group(t, n, m)
    ecog = rng.randint(0, 1) if m == "M0" else rng.randint(0, 3)
    death_probability = 0.5 if group.startswith("IV") else 0.25 if group.startswith("III") else 0.06
    contacts, death = plan_followup(rng, diagnosis, death_probability, dies)
    course = Course(
        cancer="lung",
        subtype=subtype,
        diagnosis_date=diagnosis,
        stage={"t": t, "n": n, "m": m, "group": group, "ecog": str(ecog)},
        contacts=contacts,
        death_date=death,
        smoking=rng.choices(("从不", "既往", "当前"), (45, 30, 25))[0],
    )
    course.biomarkers = [
        b for b in draw_biomarkers(rng, subtype, diagnosis) if b.tested_on < contacts[-1]
    ]
    mu, sigma = _CEA[subtype]
    course.labs = [
        LabDraw(draw_time(rng, day), {"CEA": min(max(rng.lognormvariate(mu, sigma), 0.3), 5000.0)})
        for day in plan_lab_days(rng, course)
    ]
    course.treatments = clip_treatments(plan_lung_treatments(rng, course), course.last_contact)
    return course


def draw_biomarkers(rng: random.Random, subtype: str, diagnosis: date) -> list[Biomarker]:
    """Driver tests (mutually exclusive drivers) plus PD-L1 TPS; small-cell gets PD-L1 only."""
    day = diagnosis + timedelta(days=rng.randint(3, 20))
    pdl1 = rng.choices((0, rng.randint(1, 49), rng.randint(50, 100)), (35, 35, 30))[0]
    if subtype == "SCLC":
        return [Biomarker("PD-L1", f"{pdl1}%", day)] if rng.random() < 0.5 else []
    egfr_rate = 0.45 if subtype == "ADC" else 0.05
    roll = rng.random()
    driver = (
        "EGFR"
        if roll < egfr_rate
        else "ALK"
        if roll < egfr_rate + 0.05
        else "ROS1"
        if roll < egfr_rate + 0.07
        else "KRAS"
        if roll < egfr_rate + 0.10
        else None
    )
    egfr = rng.choice(("19外显子缺失", "L858R")) if driver == "EGFR" else "阴性"
    markers = [
        Biomarker("EGFR", egfr, day),
        Biomarker("ALK", "阳性" if driver == "ALK" else "阴性", day),
        Biomarker("ROS1", "阳性" if driver == "ROS1" else "阴性", day),
        Biomarker("KRAS", "G12C" if driver == "KRAS" else "阴性", day),
        Biomarker("PD-L1", f"{pdl1}%", day),
    ]
    if driver == "EGFR" and rng.random() < 0.15:  # resistance clone found on re-biopsy
        later = day + timedelta(days=rng.randint(300, 700))
        markers.append(Biomarker("EGFR", "T790M", later))
    return markers


def plan_lung_treatments(rng: random.Random, course: Course) -> list[TreatmentEvent]:
    """Targeted drug for EGFR/ALK drivers, else a platinum doublet then pembrolizumab."""
    group = course.stage["group"]
    results = {b.test: b.result for b in course.biomarkers}
    day = course.biomarkers[0].tested_on if course.biomarkers else course.diagnosis_date
    day += timedelta(days=rng.randint(7, 30))
    events: list[TreatmentEvent] = []
    if not group.startswith(("III", "IV")):
        events.append(TreatmentEvent("LOB", course.diagnosis_date + timedelta(days=14), None))
        if rng.random() < 0.5:
            return events
        day += timedelta(days=rng.randint(30, 60))  # adjuvant therapy after the lobectomy
    early = bool(events)
    if results.get("EGFR", "阴性") != "阴性":
        return events + [TreatmentEvent("OSI", day, day + timedelta(days=rng.randint(120, 1100)))]
    if results.get("ALK") == "阳性":
        return events + [TreatmentEvent("ALC", day, day + timedelta(days=rng.randint(120, 1100)))]
    if course.subtype == "SCLC":
        platinum = rng.choice(("DDP", "CBP"))
        doublet = (platinum, "ETO")
    elif course.subtype == "ADC":
        doublet = (rng.choice(("CBP", "CBP", "DDP")), "PMX")
    else:
        doublet = ("CBP", "PEMB")
    end = day + timedelta(days=rng.randint(63, 126))  # 3-6 cycles of 3 weeks
    events.extend(TreatmentEvent(code, day, end) for code in doublet)
    later_io = course.subtype != "SCLC" and "PEMB" not in doublet
    if not early and later_io and rng.random() < 0.6:
        day = end + timedelta(days=rng.randint(21, 120))
        events.append(TreatmentEvent("PEMB", day, day + timedelta(days=rng.randint(63, 720))))
    return events
