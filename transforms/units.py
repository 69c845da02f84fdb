"""Lab result numbers and units: parse reported values and convert them to canonical UCUM units."""

from __future__ import annotations

import csv
import logging
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transforms.encoding import normalise_nfkc
from transforms.errors import MappingError

log = logging.getLogger(__name__)

DEFAULT_UNITS_PATH = Path(__file__).resolve().parents[1] / "mappings" / "_shared" / "units.csv"
ANY_ANALYTE = "*"
UNIT_COLUMNS = ("analyte", "from_unit", "to_unit", "factor", "source")

_KEY_SEPARATOR = "\x1f"
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹]+")
# "×10^9/L", "x10*9/l", "10E9/L", "10^9/L" are all how Chinese LIS systems write counts per litre.
_POWER_OF_TEN = re.compile(r"(?:[x×*])?10(?:\^|\*|[eE])(\d+)/[lL]")
# Spellings whose lower-case forms cannot collide (no mega/milli or micro/unit clash among
# them), so matching them case-insensitively is safe. Anything else keeps its case.
_CANONICAL_SPELLINGS = (
    "ng/mL", "ug/L", "ug/mL", "pg/mL", "mg/L", "mg/dL", "g/L", "g/dL",
    "umol/L", "mmol/L", "nmol/L", "pmol/L", "IU/mL", "IU/L", "kIU/L", "mIU/mL", "mIU/L",
    "U/L", "U/mL", "kU/L", "{INR}", "INR", "%", "fL", "pg",
)  # fmt: skip
_SPELLING_BY_LOWER = {spelling.lower(): spelling for spelling in _CANONICAL_SPELLINGS}
_THOUSANDS_COMMA = r"(?<=\d),(?=\d{3}(?:\D|$))"
_LEADING_QUALIFIER = r"^(?:<=|>=|[<>≤≥])"


@dataclass(frozen=True)
class UnitTable:
    """Conversions keyed by (analyte LOINC or "*", normalised from_unit) -> (UCUM unit, factor).

    `*` rows apply only to analytes that have no rows of their own, so a listed analyte
    reported in an unexpected unit is quarantined instead of passing through a generic row.
    """

    conversions: Mapping[tuple[str, str], tuple[str, float]]
    path: str = ""

    @property
    def analytes(self) -> frozenset[str]:
        """Analytes with their own rows (the `*` wildcard excluded)."""
        return frozenset(a for a, _ in self.conversions if a != ANY_ANALYTE)


def normalise_unit_spelling(units: pd.Series) -> pd.Series:
    """Normalise unit spellings to the table's form: NFKC, micro as `u`, `10*9/L`, known case.

    Blank/missing becomes ''. Whitespace is removed, full-width characters folded, `µ`/`μ`/`mc`
    become `u`, powers of ten per litre become UCUM `10*N/L`, and a known unit written in
    another case (`ng/ml`, `iu/ml`) gets its canonical case. Runs once per distinct spelling.
    """
    text = units.astype("string")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    normalised = [_normalise_one_unit(str(u)) for u in uniques]
    lookup = np.array([*normalised, ""], dtype=object)
    return pd.Series(lookup[codes], index=units.index, dtype="string", name=units.name)


def load_unit_table(path: Path | None = None) -> UnitTable:
    """Read and check the unit table CSV (default mappings/_shared/units.csv).

    Raises MappingError naming file, line and column for a bad header, blank analyte or
    to_unit, a factor that is not a positive finite number, a duplicate (analyte, from_unit)
    after spelling normalisation, or an analyte with two different canonical units.
    """
    source = Path(path) if path is not None else DEFAULT_UNITS_PATH
    try:
        handle = source.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{source}: cannot read the unit table ({exc.strerror})") from exc
    with handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != UNIT_COLUMNS:
            raise MappingError(
                f"{source}, line 1: header must be {','.join(UNIT_COLUMNS)}; fix the header row"
            )
        conversions: dict[tuple[str, str], tuple[str, float]] = {}
        first_line: dict[tuple[str, str], int] = {}
        canonical: dict[str, tuple[str, int]] = {}
        for row in reader:
            line = reader.line_num
            key, target, factor = _check_unit_row(row, source, line)
            if key in conversions:
                raise MappingError(
                    f"{source}, line {line}, column from_unit: duplicate of line "
                    f"{first_line[key]} for the same analyte and unit; keep one row"
                )
            analyte = key[0]
            if analyte != ANY_ANALYTE:
                seen_unit, seen_line = canonical.setdefault(analyte, (target, line))
                if seen_unit != target:
                    raise MappingError(
                        f"{source}, line {line}, column to_unit: analyte has canonical unit "
                        f"{seen_unit!r} on line {seen_line}; use one canonical unit per analyte"
                    )
            conversions[key] = (target, factor)
            first_line[key] = line
    log.debug("loaded %s unit conversions from %s", len(conversions), source)
    return UnitTable(conversions=conversions, path=str(source))


def convert_to_ucum(
    values: pd.Series, units: pd.Series, analytes: pd.Series, table: UnitTable
) -> tuple[pd.Series, pd.Series]:
    """Convert result values to each analyte's canonical UCUM unit, row by row.

    Returns (float64 values, string units). Where the table has no conversion for the row's
    analyte and (normalised) unit, both are missing (NaN, <NA>): the caller quarantines those
    rows. A missing analyte (unmapped local code) uses the `*` rows.
    """
    # Positional alignment: the three inputs are columns of one frame, whatever their index.
    spelled = normalise_unit_spelling(units).reset_index(drop=True)
    analyte = analytes.astype("string").str.strip().fillna(ANY_ANALYTE).reset_index(drop=True)
    own_rows = analyte.isin(list(table.analytes))
    lookup_analyte = analyte.where(own_rows, ANY_ANALYTE)
    keys = lookup_analyte + _KEY_SEPARATOR + spelled

    flat_keys = [a + _KEY_SEPARATOR + u for a, u in table.conversions]
    targets = pd.Series([t for t, _ in table.conversions.values()], index=flat_keys, dtype="string")
    factors = pd.Series(
        [f for _, f in table.conversions.values()], index=flat_keys, dtype="float64"
    )

    unit_out = keys.map(targets).astype("string")
    factor = keys.map(factors).astype("float64")
    number = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    converted = pd.Series(number * factor.to_numpy(), index=values.index, name=values.name)
    unit_out.index = values.index
    missing = int(unit_out.isna().sum())
    if missing:
        log.info("%s of %s lab rows have no unit conversion", missing, len(unit_out))
    return converted, unit_out


def parse_numeric(values: pd.Series) -> pd.Series:
    """Parse reported results to float64; NaN where the text is not a number.

    Folds full-width characters, strips whitespace and thousands separators (1,234.5), and
    drops a leading `<`, `>`, `<=`, `>=`, `≤` or `≥` qualifier: "<0.5" becomes 0.5, so the
    bound is kept as the value and the censoring is lost (keep the raw text if it matters).
    A decimal comma ("12,5") is not guessed at and gives NaN, as do "inf" and "nan".
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(np.nan, index=values.index, dtype="float64", name=values.name)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    text = values.astype("string")
    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    # Most results are plain numbers; only the rest pay for the cleaning regexes.
    retry = (numbers.isna() & text.notna()).to_numpy()
    if retry.any():
        cleaned = (
            normalise_nfkc(text[retry])
            .str.replace(r"\s+", "", regex=True)
            .str.replace(_LEADING_QUALIFIER, "", regex=True)
            .str.replace(_THOUSANDS_COMMA, "", regex=True)
        )
        numbers[retry] = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    return numbers.where(np.isfinite(numbers))


def _normalise_one_unit(unit: str) -> str:
    """Normalise one distinct unit spelling (called once per unique value)."""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group().translate(_SUPERSCRIPTS), unit)
    text = unicodedata.normalize("NFKC", text)  # also maps the micro sign U+00B5 to U+03BC
    text = re.sub(r"\s+", "", text).replace("μ", "u").replace("mcg", "ug")
    power = _POWER_OF_TEN.fullmatch(text)
    if power:
        return f"10*{int(power.group(1))}/L"
    return _SPELLING_BY_LOWER.get(text.lower(), text)


def _check_unit_row(
    row: dict[str, str | None], source: Path, line: int
) -> tuple[tuple[str, str], str, float]:
    """Validate one unit table row; return its key, target unit and factor."""
    analyte = (row.get("analyte") or "").strip()
    if not analyte:
        raise MappingError(f"{source}, line {line}, column analyte: blank; use a LOINC code or *")
    target = (row.get("to_unit") or "").strip()
    if not target:
        raise MappingError(f"{source}, line {line}, column to_unit: blank; give the UCUM unit")
    raw_factor = (row.get("factor") or "").strip()
    try:
        factor = float(raw_factor)
    except ValueError:
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0:
        raise MappingError(
            f"{source}, line {line}, column factor: not a positive number; "
            "give the multiplier from from_unit to to_unit"
        )
    from_unit = _normalise_one_unit(row.get("from_unit") or "")
    return (analyte, from_unit), target, factor
