"""Normalise lung biomarker result text into the canonical `result` and `tps_percent` columns.

Plain words (阳性, 阴性, 野生型 ...) come from the hospital's value map in columns.yaml; only
spellings that need patterns live here:

- EGFR exon 19 deletion: `19外显子缺失`, `19号外显子缺失`, `外显子19缺失`, `19del`,
  `exon 19 deletion`, `ex19del`, `E19del` -> `exon19del`;
- point mutations by protein change: `L858R`, `T790M`, KRAS `G12C` (also `p.L858R`,
  `Leu858Arg`, `21外显子L858R突变` ...);
- PD-L1 tumour proportion score: `55%`, `TPS 55%`, `TPS：55 %`, `55` -> tps_percent 55.0.
  `<1%` is the assay's "no expression" band (under 1 % of tumour cells stain); it is stored as
  **0.5**, the middle of that band: it falls on the same side of every clinical cut-off
  (1 %, 50 %) as the report and stays distinguishable from a reported 0 %. Other bands
  (`1-49%`, `≥50%`) carry no single value and are left unparsed.

Which rule applies is chosen by the row's LOINC code (from the concept map), not by the local
code, so every hospital's spelling of the test name works. Text matching two variants, or
nothing, is unparsed: the row is flagged in `_unparsed` and quarantined by
`biomarker.values_parseable`. Whether a result fits its test (G12C on an EGFR test) is the
validation suite's job, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from transforms.encoding import normalise_nfkc
from transforms.mapping import ColumnSpec

# LOINC code -> gene/test; codes and sources in mappings/<hospital>/codes/biomarker.csv.
EGFR_LOINC = "21665-5"
ALK_LOINC = "100019-9"
ROS1_LOINC = "102038-7"
KRAS_LOINC = "21702-6"
PDL1_TPS_LOINC = "83053-9"
BIOMARKER_LOINC: dict[str, str] = {
    EGFR_LOINC: "EGFR",
    ALK_LOINC: "ALK",
    ROS1_LOINC: "ROS1",
    KRAS_LOINC: "KRAS",
    PDL1_TPS_LOINC: "PD-L1",
}
RESULT_VALUES = ("exon19del", "L858R", "T790M", "G12C", "positive", "negative")
TPS_BELOW_ONE = 0.5  # stored value of the "<1%" band, see the module docstring

VARIANT_PATTERNS: dict[str, str] = {
    "exon19del": (
        r"(?:(?<![\d.])19\s*号?\s*外显子\s*(?:框内)?缺失"
        r"|外显子\s*19\s*(?:框内)?缺失"
        r"|\b(?:exon|ex|e)\s*19\s*[-_ ]?\s*del(?:etion)?\b"
        r"|(?<![\d.])19\s*[-_ ]?\s*del(?:etion)?\b)"
    ),
    "L858R": r"(?:L858R|Leu858Arg)",
    "T790M": r"(?:T790M|Thr790Met)",
    "G12C": r"(?:G12C|Gly12Cys)",
}
_TPS = (
    r"^(?:PD-?L1\s*)?(?:\(?TPS\)?\s*[:=]?\s*)?"
    r"(?P<cmp><)?\s*(?P<num>\d{1,3}(?:\.\d+)?)\s*%?$"
)


@dataclass(frozen=True)
class BiomarkerResults:
    """Normalised columns on the input's index, and which non-blank texts did not parse."""

    result: pd.Series
    tps_percent: pd.Series
    unparsed: pd.Series


def normalise_text(text: pd.Series) -> pd.Series:
    """Full-width folded, trimmed, single-spaced text; blanks become NA."""
    folded = normalise_nfkc(text.astype("string")).str.replace(r"\s+", " ", regex=True).str.strip()
    return folded.mask(folded == "", pd.NA)


def match_variants(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(variant or NA, True where the text names more than one variant)."""
    found = pd.DataFrame(
        {
            name: text.str.contains(pattern, case=False, regex=True).fillna(False).astype(bool)
            for name, pattern in VARIANT_PATTERNS.items()
        },
        index=text.index,
    )
    hits = found.sum(axis=1)
    variant = found.idxmax(axis=1).astype("string").where(hits == 1, pd.NA)
    return variant, hits > 1


def parse_tps(text: pd.Series) -> pd.Series:
    """PD-L1 TPS percent from `55%`, `TPS 55%`, `<1%`; NaN where the text is not a score."""
    parts = text.str.extract(_TPS, flags=0)
    number = pd.to_numeric(parts["num"], errors="coerce").astype("float64")
    below = parts["cmp"].notna()
    number = number.mask(below & (number == 1.0), TPS_BELOW_ONE)
    return number.mask(below & (number != TPS_BELOW_ONE), np.nan)


def normalise_biomarker_results(
    text: pd.Series, loinc_code: pd.Series, value_map: Mapping[str, str] | None = None
) -> BiomarkerResults:
    """Canonical result / tps_percent for each row's result text, chosen by its LOINC code.

    PD-L1 rows take a TPS only; other known tests take the value map, then the variant
    patterns; rows whose test is unknown (unmapped code) try all three.
    """
    clean = normalise_text(text)
    kind = loinc_code.astype("string").map(BIOMARKER_LOINC)
    is_pdl1 = (kind == "PD-L1").fillna(False).astype(bool)
    unknown = kind.isna()
    lookup = {_fold(k): v for k, v in (value_map or {}).items()}
    mapped = clean.str.casefold().map(lookup).astype("string")
    variant, ambiguous = match_variants(clean)
    result = mapped.fillna(variant).where(~is_pdl1, pd.NA)
    result = result.mask(ambiguous & mapped.isna(), pd.NA)
    tps = parse_tps(clean).where(is_pdl1 | (unknown & result.isna()), np.nan)
    present = clean.notna()
    unparsed = present & result.isna() & tps.isna()
    return BiomarkerResults(
        result.astype("string"), tps.astype("float64"), unparsed.fillna(False).astype(bool)
    )


def _fold(value: str) -> str:
    folded = normalise_text(pd.Series([value], dtype="string")).iloc[0]
    return "" if folded is pd.NA else str(folded).casefold()


def stage_biomarker_results(
    out: pd.DataFrame,
    raw: pd.DataFrame,
    specs: Mapping[str, ColumnSpec],
    value_maps: Mapping[str, Mapping[str, str]],
) -> tuple[dict[str, pd.Series], dict[str, pd.Series]]:
    """Staged biomarker columns from the raw result text: (columns to set, unparsed flags).

    Replaces the generic value-map pass on `result` (which cannot know the pattern
    spellings); a separate TPS source column, if mapped, fills rows the text did not.
    """
    source = next((c for c, s in specs.items() if s.to == "result" and not s.drop), None)
    if source is None:
        return {}, {}
    spec = specs[source]
    vmap = value_maps.get(spec.values, {}) if spec.values else {}
    loinc = out["loinc_code"] if "loinc_code" in out else pd.Series(pd.NA, index=out.index)
    parsed = normalise_biomarker_results(raw[source], loinc, vmap)
    tps = parsed.tps_percent
    if "tps_percent" in out:
        tps = tps.fillna(out["tps_percent"].astype("float64"))
    return {"result": parsed.result, "tps_percent": tps}, {"result": parsed.unparsed}
