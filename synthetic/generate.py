"""Generate all three synthetic hospitals plus the truth files in one deterministic run."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from synthetic.defects import DefectLog
from synthetic.east_liver import write_east_liver
from synthetic.north_chest import write_north_chest
from synthetic.south_general import write_south_general
from synthetic.truth import PersonLog

log = logging.getLogger(__name__)

HOSPITALS = ("east_liver", "north_chest", "south_general")
TRUTH_DIR = "_truth"


def generate_all(
    out_dir: Path, patients: int = 200, seed: int = 42, db_url: str | None = None
) -> dict[str, Any]:
    """Write out_dir/<hospital>/ for each site and out_dir/_truth/; same inputs, same bytes.

    `patients` is per hospital. With `db_url`, south_general's HIS tables go to that database
    (dropped and recreated) instead of out_dir/south_general/his.sqlite. Returns a summary of
    row counts per hospital and source table and of injected defects.
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    out_dir = Path(out_dir)
    for name in (*HOSPITALS, TRUTH_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    truth = out_dir / TRUTH_DIR
    truth.mkdir(parents=True)
    defects = DefectLog(truth / "defects.csv")
    persons = PersonLog(truth / "persons.csv")
    try:
        rows = {
            "east_liver": write_east_liver(out_dir, patients, seed, defects, persons),
            "north_chest": write_north_chest(out_dir, patients, seed, defects, persons),
            "south_general": write_south_general(out_dir, patients, seed, defects, persons, db_url),
        }
    finally:
        defects.close()
        persons.close()
    by_hospital: dict[str, dict[str, int]] = {name: {} for name in HOSPITALS}
    for (hospital, kind), count in sorted(defects.counts.items()):
        by_hospital[hospital][kind] = count
    summary = {
        "seed": seed,
        "patients_per_hospital": patients,
        "his_database": "external" if db_url else "south_general/his.sqlite",
        "rows": rows,
        "defects": sum(defects.counts.values()),
        "defects_by_hospital": by_hospital,
    }
    (truth / "summary.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    log.info("synthetic: %s patients per hospital, %s defects", patients, summary["defects"])
    return summary
