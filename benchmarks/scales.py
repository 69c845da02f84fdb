"""Benchmark scales: synthetic patients per hospital for ~10k, ~100k and ~1M source rows."""

from __future__ import annotations

import os
from dataclasses import dataclass

# The generator writes ~130 source rows per patient across the three hospitals' tables.
ROWS_PER_PATIENT = 130


@dataclass(frozen=True)
class Scale:
    name: str
    patients: int  # per hospital

    @property
    def approx_rows(self) -> int:
        return self.patients * ROWS_PER_PATIENT


SCALES: dict[str, Scale] = {
    "smoke": Scale("smoke", 8),
    "small": Scale("small", 77),
    "medium": Scale("medium", 770),
    "large": Scale("large", 7700),
}


def selected_scales(environ: dict[str, str] | None = None) -> list[Scale]:
    """Scales to run from BENCH_SCALE: unset = small+medium, `large` adds 1M, or a comma list."""
    value = (environ if environ is not None else os.environ).get("BENCH_SCALE", "").strip()
    if not value:
        names = ["small", "medium"]
    elif value == "large":
        names = ["small", "medium", "large"]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCALES]
    if unknown:
        raise ValueError(f"BENCH_SCALE: unknown scale(s) {unknown}; known: {sorted(SCALES)}")
    return [SCALES[n] for n in names]
