"""Cross-table check GX cannot express on one frame: every row's patient must be loaded.

A diagnosis, lab, treatment or follow-up row whose patient is absent from every patient
export of the hospital, or whose patient row is in quarantine, would point at nothing in the
warehouse. Such rows are quarantined too, and leave quarantine when their patient does.
"""

from __future__ import annotations

import pandas as pd

from expectations.outcome import CheckResult

EXPLANATION = (
    "The row's patient is not loaded: no patient export of this hospital has the record "
    "number, or the patient row itself is in quarantine."
)


def check_patient_known(
    table: str, frame: pd.DataFrame, known: set[str]
) -> tuple[CheckResult, list[str]]:
    """Result of `<table>.patient_known` and the row hashes that fail it."""
    keys = frame["patient_key"]
    orphan = keys.notna() & ~keys.isin(known)
    failed = frame.loc[orphan, "_row_hash"].tolist()
    result = CheckResult(
        check_id=f"{table}.patient_known",
        table=table,
        category="conformance",
        severity="quarantine",
        evaluated=int(keys.notna().sum()),
        failed=len(failed),
        success=not failed,
        explanation=EXPLANATION,
    )
    return result, failed
