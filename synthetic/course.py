"""Hospital-independent clinical course of one cancer patient: the facts every export renders."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

STUDY_END = date(2025, 6, 30)
DIAGNOSIS_FIRST = date(2015, 1, 1)
DIAGNOSIS_SPAN_DAYS = (date(2024, 12, 31) - DIAGNOSIS_FIRST).days
MAX_LAB_DRAWS = 6


@dataclass(frozen=True)
class LabDraw:
    taken_at: datetime
    values: dict[str, float]  # abstract test code -> value in the canonical unit


@dataclass(frozen=True)
class TreatmentEvent:
    code: str  # abstract code, rendered to each hospital's local code by its writer
    start: date
    end: date | None  # None for one-off procedures


@dataclass(frozen=True)
class Biomarker:
    test: str
    result: str
    tested_on: date


@dataclass
class Course:
    cancer: str  # liver or lung
    subtype: str  # HCC, ICC, ADC, SCC, SCLC
    diagnosis_date: date
    stage: dict[str, str]
    contacts: list[date]
    death_date: date | None
    comorbidities: list[tuple[str, date]] = field(default_factory=list)
    hbsag: str | None = None
    hcv_ab: str | None = None
    smoking: str | None = None
    labs: list[LabDraw] = field(default_factory=list)
    treatments: list[TreatmentEvent] = field(default_factory=list)
    biomarkers: list[Biomarker] = field(default_factory=list)

    @property
    def last_contact(self) -> date:
        return self.contacts[-1]


def draw_diagnosis_date(rng: random.Random) -> date:
    """A first-diagnosis date in 2015-2024."""
    return DIAGNOSIS_FIRST + timedelta(days=rng.randrange(DIAGNOSIS_SPAN_DAYS + 1))


def plan_followup(
    rng: random.Random, diagnosis: date, death_probability: float, dies: bool | None = None
) -> tuple[list[date], date | None]:
    """Contacts every 2-5 months after diagnosis until death or censoring; the last is final."""
    span = (STUDY_END - diagnosis).days
    if dies is None:
        dies = rng.random() < death_probability
    death = None
    if dies:
        death = diagnosis + timedelta(days=rng.randint(30, max(31, span - 1)))
        end = min(death + timedelta(days=rng.randint(0, 45)), STUDY_END)
    else:
        end = max(STUDY_END - timedelta(days=rng.randint(0, 180)), diagnosis + timedelta(days=30))
    contacts = []
    day = diagnosis + timedelta(days=rng.randint(30, 90))
    while day < end and (death is None or day < death):
        contacts.append(day)
        day += timedelta(days=rng.randint(60, 150))
    contacts.append(end)
    return contacts, death


def draw_time(rng: random.Random, day: date) -> datetime:
    """A specimen time on a working-hours clock, minute resolution."""
    return datetime.combine(day, time(rng.randint(7, 16), rng.randrange(60)))


def plan_lab_days(rng: random.Random, course: Course) -> list[date]:
    """Blood draws just before diagnosis and at alternate follow-up contacts while alive."""
    days = [course.diagnosis_date - timedelta(days=rng.randint(0, 10))]
    for contact in course.contacts[1::2]:
        if course.death_date is None or contact < course.death_date:
            days.append(contact)
    return days[:MAX_LAB_DRAWS]


def clip_treatments(events: list[TreatmentEvent], last_day: date) -> list[TreatmentEvent]:
    """Drop events starting after the last contact and end drugs no later than it."""
    kept = []
    for event in events:
        if event.start >= last_day:
            break
        end = event.end if event.end is None else min(event.end, last_day)
        kept.append(TreatmentEvent(event.code, event.start, end))
    return kept
