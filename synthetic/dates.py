"""Messy date rendering: the formats Chinese hospital exports mix, chosen per row."""

from __future__ import annotations

import random
from datetime import date, datetime

DATE_STYLES = ("iso", "slash", "cn", "compact")
_DATE_WEIGHTS = (40, 25, 20, 15)
DATETIME_STYLES = ("iso_time", "slash_time", "iso", "slash", "cn", "compact")
_DATETIME_WEIGHTS = (35, 20, 15, 10, 10, 10)
# Strings no date parser should accept; used for the `unparseable_date` defect.
UNPARSEABLE_DATES = ("2024-13-45", "三月五日", "20241345", "2023年13月32日")


def pick_date_style(rng: random.Random) -> str:
    """A date style for one row, weighted towards ISO like most exports."""
    return rng.choices(DATE_STYLES, _DATE_WEIGHTS)[0]


def pick_datetime_style(rng: random.Random) -> str:
    """A timestamp style for one lab row; some rows carry only the date."""
    return rng.choices(DATETIME_STYLES, _DATETIME_WEIGHTS)[0]


def format_date(value: date | None, style: str) -> str:
    """Render a date (or empty string) in one of the styles; a datetime keeps its time part."""
    if value is None:
        return ""
    if style == "iso":
        return f"{value:%Y-%m-%d}"
    if style == "slash":
        return f"{value.year}/{value.month}/{value.day}"
    if style == "cn":
        return f"{value.year}年{value.month}月{value.day}日"
    if style == "compact":
        return f"{value:%Y%m%d}"
    if isinstance(value, datetime) and style == "iso_time":
        return f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, datetime) and style == "slash_time":
        return f"{value.year}/{value.month}/{value.day} {value:%H:%M}"
    raise ValueError(f"unknown date style {style!r}")
