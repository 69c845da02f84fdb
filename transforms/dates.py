"""Parse the many date spellings of Chinese hospital exports into local times, UTC and dates."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from transforms.encoding import normalise_nfkc

log = logging.getLogger(__name__)

DEFAULT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y年%m月%d日",
    "%Y%m%d",
    "%Y.%m.%d",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y年%m月%d日 %H时%M分",
    "%Y年%m月%d日 %H时%M分%S秒",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
)

# Excel's 1900 date system counts 1900-02-29 (which never existed), so serials from 1900-03-01
# on are days since 1899-12-30. 20000..80000 covers 1954-10-03..2119-01-10: every plausible
# clinical date, and no 8-digit %Y%m%d value can fall in that range.
EXCEL_ORIGIN = "1899-12-30"
EXCEL_SERIAL_MIN = 20000
EXCEL_SERIAL_MAX = 80000
# Digits as [0-9], not \d: pandas runs \d with Python's re, value by value, on any column
# holding a non-ASCII character (a 年月日 date), and with Arrow's RE2 otherwise; values are
# NFKC-normalised first, so full-width digits are ASCII by then.
_EXCEL_SERIAL_RE = r"^[0-9]{5}(?:\.[0-9]+)?$"
_DIRECTIVE = re.compile(r"(%.)")
_REGEX_META = re.compile(r"[.^$*+?()\[\]{}|\\]")

# Zones whose clocks never skip or repeat today; see to_utc for their 1940s/1986-91 DST history.
_NO_NAT_ZONES = frozenset(
    {"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "PRC"}
)

_DATETIME_KINDS = frozenset({"datetime", "datetime64", "date"})


def parse_local_datetimes(
    values: pd.Series, formats: Sequence[str] = DEFAULT_DATE_FORMATS
) -> pd.Series:
    """Parse source date values to naive local wall time (`datetime64[us]`), one per row.

    Accepts strings in `formats` (tried in order on the still-unparsed values; full-width
    characters are NFKC-folded and runs of whitespace collapsed first; a value reaches a
    format's parser only if its shape fits, e.g. 8 digits for %Y%m%d), Excel serial numbers
    (numbers or 5-digit numeric strings in 20000..80000, 1900 date system) and datetime/date
    objects. Blank and unparseable values (including impossible dates such as 2024-13-45)
    become NaT; use `unparseable_mask` to tell them apart. Timezone-aware inputs keep their
    wall time. Work is done once per distinct value and mapped back, since exports repeat dates.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None).astype("datetime64[us]")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.astype("datetime64[us]")
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return _parse_numeric_dates(values)
    if pd.api.types.infer_dtype(values, skipna=True) in _DATETIME_KINDS:
        return pd.to_datetime(values, errors="coerce").astype("datetime64[us]")

    codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
    parsed_uniques = _parse_date_strings(pd.Series(uniques, dtype="string"), formats)
    # A trailing NaT lets the -1 code of missing values index it directly.
    lookup = np.append(parsed_uniques.to_numpy(dtype="datetime64[us]"), np.datetime64("NaT", "us"))
    taken = lookup[codes]
    return pd.Series(taken, index=values.index, dtype="datetime64[us]", name=values.name)


def unparseable_mask(values: pd.Series, parsed: pd.Series) -> pd.Series:
    """True where the source value was non-blank but parsed to NaT (the row gets flagged)."""
    return ~_blank_mask(values) & parsed.isna()


def to_utc(local: pd.Series, tz: str) -> pd.Series:
    """Convert naive local wall times in zone `tz` to UTC (`datetime64[us, UTC]`).

    China Standard Time zones (Asia/Shanghai and aliases) never yield NaT: China has kept UTC+8
    all year since 1992, but tzdata records DST in 1940-49 and 1986-91, so a repeated hour
    there is read as standard time and a skipped hour is shifted forward. Other zones follow
    the conservative rule: an ambiguous wall time (autumn fold) becomes NaT because the hour
    cannot be known, and a nonexistent one (spring gap) is shifted forward to the first valid
    instant, as clocks that were not yet changed would have shown.
    """
    naive = local.astype("datetime64[us]")
    if tz in _NO_NAT_ZONES:
        standard_time = np.zeros(len(naive), dtype=bool)
        aware = naive.dt.tz_localize(tz, ambiguous=standard_time, nonexistent="shift_forward")
    else:
        aware = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
    return aware.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def to_local_date(local: pd.Series) -> pd.Series:
    """Calendar date of naive local wall times, as midnight `datetime64[ms]` (NaT stays NaT).

    A datetime64 column rather than python `date` objects keeps the work vectorised; the
    staging writer casts it to Arrow `date32` (`pa.array(s).cast(pa.date32())` is exact because
    the time part is always zero).
    """
    return local.astype("datetime64[us]").dt.normalize().astype("datetime64[ms]")


def _blank_mask(values: pd.Series) -> pd.Series:
    """True for None/NaN/NA and for strings that are empty after stripping whitespace."""
    missing = values.isna()
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ):
        return missing
    stripped = values.astype("string").str.strip()
    return (missing | stripped.eq("")).fillna(True).astype(bool)


def _parse_numeric_dates(values: pd.Series) -> pd.Series:
    """Numbers are Excel serials, or 8-digit integers read as %Y%m%d (e.g. 20240305)."""
    numbers = values.astype("float64")
    result = _excel_serials_to_datetimes(numbers)
    compact = numbers.between(19000101, 29991231) & (numbers % 1 == 0)
    if compact.any():
        text = numbers[compact].astype("int64").astype("string")
        result[compact] = pd.to_datetime(text, format="%Y%m%d", errors="coerce")
    return result.astype("datetime64[us]")


def _excel_serials_to_datetimes(numbers: pd.Series) -> pd.Series:
    """Excel 1900-system serials in range to datetimes rounded to the second; others NaT."""
    in_range = numbers.between(EXCEL_SERIAL_MIN, EXCEL_SERIAL_MAX)
    result = pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[us]")
    if in_range.any():
        converted = pd.to_datetime(numbers[in_range], unit="D", origin=EXCEL_ORIGIN)
        result[in_range] = converted.dt.round("s").astype("datetime64[us]")
    return result


def _parse_date_strings(text: pd.Series, formats: Sequence[str]) -> pd.Series:
    """Parse distinct strings: Excel serials first, then each format on what is still NaT."""
    cleaned = normalise_nfkc(text).str.strip()
    # Collapse inner whitespace runs only where present: a regex over every value costs more.
    spaced = (
        cleaned.str.contains("  ", regex=False) | cleaned.str.contains("\t", regex=False)
    ).fillna(False)
    if spaced.any():
        cleaned[spaced] = cleaned[spaced].str.replace(r"\s+", " ", regex=True)
    result = pd.Series(pd.NaT, index=cleaned.index, dtype="datetime64[us]")

    serial = cleaned.str.fullmatch(_EXCEL_SERIAL_RE).fillna(False).astype(bool)
    if serial.any():
        result[serial] = _excel_serials_to_datetimes(cleaned[serial].astype("float64"))

    pending = cleaned.notna() & cleaned.ne("") & ~serial
    for fmt in formats:
        todo = pending & result.isna()
        shape = _format_shape(fmt)
        if shape is not None and todo.any():
            # pandas' strict parser is slow on values that fail, so only shape matches reach it.
            todo &= cleaned.str.fullmatch(shape).fillna(False).astype(bool)
        if not todo.any():
            continue
        parsed = pd.to_datetime(cleaned[todo], format=fmt, errors="coerce")
        result[todo] = parsed.astype("datetime64[us]")
    unparsed = int((pending & result.isna()).sum())
    if unparsed:
        log.debug("%s distinct date values matched no format", unparsed)
    return result


def _format_shape(fmt: str) -> str | None:
    """A regex that every string parseable with `fmt` matches, or None for unknown directives.

    Numeric fields touching another directive (as in %Y%m%d) are fixed width, which also keeps
    5-7 digit Excel serials and codes away from %Y%m%d.
    """
    tokens = [token for token in _DIRECTIVE.split(fmt) if token]
    parts: list[str] = []
    for position, token in enumerate(tokens):
        if not _DIRECTIVE.fullmatch(token):
            # Escape metacharacters only: pyarrow's RE2 rejects re.escape's "\ " and "\-".
            parts.append(_REGEX_META.sub(r"\\\g<0>", token))
            continue
        code = token[1]
        if code == "%":
            parts.append("%")
        elif code == "Y":
            parts.append("[0-9]{4}")
        elif code == "f":
            parts.append("[0-9]{1,9}")
        elif code in "mdHMS":
            neighbours = (
                tokens[max(position - 1, 0) : position] + tokens[position + 1 : position + 2]
            )
            glued = any(_DIRECTIVE.fullmatch(n) for n in neighbours)
            parts.append("[0-9]{2}" if glued else "[0-9]{1,2}")
        else:
            return None
    return "".join(parts)
