"""Value shapes and type guesses for profiling: what a column looks like, never what it holds.

A shape replaces every character by its class: `9` digit, `A` upper-case letter, `a`
lower-case letter, `C` CJK ideograph, `_` whitespace, `?` anything else but ASCII punctuation,
which is kept (so `2024-03-05` -> `9999-99-99`, `AB123456` -> `AA999999`, `张三` -> `CC`).
Runs longer than 8 are written `9{11}`, so free text gives short shapes and no content.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

PROFILE_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y年%m月%d日",
    "%Y%m%d",
    "%Y.%m.%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%Y%m%d%H%M%S",
    "%Y%m%d%H%M",
    "%Y-%m-%dT%H:%M:%S",
)
TYPE_SHARE = 0.95  # share of non-blank values that must fit a type for the column to get it
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL = re.compile(r"^[+-]?(\d+[.,]\d*|\d*[.,]\d+|\d+)([eE][+-]?\d+)?$")
_CODE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.\-_/^*]{0,23}$")
_PUNCTUATION = frozenset(string.punctuation)


def _char_class(ch: str) -> str:
    if ch.isdigit() and ch.isascii():
        return "9"
    if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff":
        return "C"
    if ord(ch) >= 0x20000:
        return "C"
    if ch.isalpha():
        return "A" if ch.isupper() else "a"
    if ch.isspace():
        return "_"
    return ch if ch in _PUNCTUATION else "?"


def value_shape(text: str) -> str:
    """The shape of one value (see the module docstring)."""
    out: list[str] = []
    for cls in map(_char_class, text):
        out.append(cls)
    shape = "".join(out)
    return re.sub(r"(.)\1{8,}", lambda m: f"{m.group(1)}{{{len(m.group(0))}}}", shape)


@dataclass(frozen=True)
class TypeGuess:
    """The inferred type of a column and, for dates, the formats that parse its values."""

    kind: str  # date, integer, decimal, code, text, empty
    formats: tuple[str, ...] = ()  # date formats parsing some values, most values first
    shares: tuple[float, ...] = ()  # share of distinct values each format parses


def _date_formats(values: pd.Series, formats: Sequence[str]) -> list[tuple[str, float]]:
    """(format, share of values it parses) when the formats together parse TYPE_SHARE."""
    masks = {fmt: pd.to_datetime(values, format=fmt, errors="coerce").notna() for fmt in formats}
    matched = []
    parsed_any = pd.Series(False, index=values.index)
    # Greedy cover, most values first: a format that parses nothing new is left out.
    for fmt, parsed in sorted(masks.items(), key=lambda m: -int(m[1].sum())):
        if (parsed & ~parsed_any).any():
            matched.append((fmt, float(parsed.mean())))
            parsed_any |= parsed
    if not matched or parsed_any.mean() < TYPE_SHARE:
        return []
    return matched


def guess_type(values: pd.Series, formats: Sequence[str] = PROFILE_DATE_FORMATS) -> TypeGuess:
    """Type of a column from its distinct non-blank strings: date, integer, decimal, code, text.

    Dates are tried first, so 8-digit `20240305` is a date when every value parses; `formats`
    lists every pattern that parses the values (`05/03/2024` fits both day- and month-first
    until a day above 12 settles it).
    """
    distinct = pd.Series(values.dropna().astype(str).str.strip().unique(), dtype=object)
    distinct = distinct[distinct != ""]
    if distinct.empty:
        return TypeGuess("empty")
    matched = _date_formats(distinct, formats)
    if matched:
        return TypeGuess("date", tuple(f for f, _ in matched), tuple(s for _, s in matched))

    def share(pattern: re.Pattern[str]) -> float:
        return float(distinct.map(lambda v: bool(pattern.match(v))).mean())

    if share(_INTEGER) >= TYPE_SHARE:
        return TypeGuess("integer")
    if share(_DECIMAL) >= TYPE_SHARE:
        return TypeGuess("decimal")
    if share(_CODE) >= TYPE_SHARE:
        return TypeGuess("code")
    return TypeGuess("text")
