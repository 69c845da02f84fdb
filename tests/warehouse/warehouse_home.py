"""Tiny fabricated $WALNUT_HOME for warehouse tests: reconciled batches of hand-made FHIR."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from pipeline.settings import Settings

HOSPITAL = "east_liver"


def batch_id(n: int) -> str:
    """Batch ids sort by landing time, like the real ones (YYYYmmddTHHMMSSZ-hash)."""
    return f"202601{n:02d}T000000Z-{n:08x}"


def patient(pid: str, batch: str, gender: str = "female", hospital: str = HOSPITAL) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"source": f"urn:walnut:{hospital}:{batch}:row-{pid}"},
        "identifier": [{"system": "urn:walnut:patient-key", "value": f"key-{pid}"}],
        "gender": gender,
        "birthDate": "1960-01-01",
    }


def condition(cid: str, pid: str, batch: str, code: str = "C22.0") -> dict:
    return {
        "resourceType": "Condition",
        "id": cid,
        "meta": {"source": f"urn:walnut:{HOSPITAL}:{batch}:row-{cid}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": "2025-03-01",
    }


def write_batch(
    settings: Settings,
    n: int,
    resources: list[dict],
    tombstones: list[dict] | None = None,
    finished_at: str | None = None,
    hospital: str = HOSPITAL,
) -> str:
    """Write one reconciled batch: FHIR NDJSON per type, tombstones, load run, reconciliation."""
    batch = batch_id(n)
    fhir = settings.fhir / hospital / batch
    gov = settings.gov / hospital / batch
    fhir.mkdir(parents=True, exist_ok=True)
    gov.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    for rtype, items in by_type.items():
        lines = "".join(json.dumps(r) + "\n" for r in items)
        (fhir / f"{rtype}.ndjson").write_text(lines, encoding="utf-8")
    if tombstones:
        lines = "".join(json.dumps(t) + "\n" for t in tombstones)
        (fhir / "_tombstones.ndjson").write_text(lines, encoding="utf-8")
    run = {
        "hospital": hospital,
        "batch_id": batch,
        "status": "success",
        "finished_at": finished_at or f"2026-01-{n + 1:02d}T01:00:00+00:00",
        "mapping_version": "test",
        "read": len(resources),
        "loaded": len(resources),
        "quarantined": 0,
        "dropped": 0,
        "resources": len(resources),
    }
    (gov / "load_run.json").write_text(json.dumps(run), encoding="utf-8")
    recon = pd.DataFrame(
        {
            "hospital": [hospital],
            "batch_id": [batch],
            "table": ["patient"],
            "read": [len(resources)],
            "loaded": [len(resources)],
            "quarantined": [0],
            "dropped": [0],
            "balanced": [True],
        }
    )
    recon.to_parquet(gov / "reconciliation.parquet", index=False)
    return batch


def snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted; build bookkeeping (gov.build_run, applied_at) left out."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY ALL"
        ).fetchall()
        rows = {}
        for schema, table in tables:
            if (schema, table) == ("gov", "build_run"):
                continue
            exclude = " EXCLUDE (applied_at)" if table == "applied_batch" else ""
            rows[f"{schema}.{table}"] = con.execute(
                f"SELECT *{exclude} FROM {schema}.{table} ORDER BY ALL"
            ).fetchall()
        return rows
    finally:
        con.close()
