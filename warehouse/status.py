"""What `walnut status` shows: last runs, rows per layer, quarantine by rule (counts only)."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq

from pipeline.settings import Settings, hospitals


def collect_status(settings: Settings) -> dict:
    runs, layers, rules = [], {}, Counter()
    for hospital in hospitals(settings):
        finished = sorted((settings.gov / hospital).glob("*/load_run.json"))
        if finished:
            runs.append(json.loads(finished[-1].read_text(encoding="utf-8")))
        landed = [
            p for p in (settings.landing / hospital).glob("*/*") if p.name != "_manifest.json"
        ]
        staged = sum(
            pq.ParquetFile(p).metadata.num_rows
            for p in (settings.staging / hospital).glob("*/*.parquet")
        )
        resources = 0
        for fhir in (settings.gov / hospital).glob("*/fhir.json"):
            resources += sum(json.loads(fhir.read_text(encoding="utf-8"))["resources"].values())
        quarantined = 0
        for path in (settings.gov / hospital).glob("*/quarantine_*.parquet"):
            table = pq.read_table(path, columns=["rule_id", "table", "source_file", "source_row"])
            frame = table.to_pandas()
            quarantined += len(frame.drop_duplicates(["table", "source_file", "source_row"]))
            rules.update((hospital, r) for r in frame["rule_id"])
        layers[hospital] = {
            "landed_files": len(landed),
            "staged_rows": staged,
            "fhir_resources": resources,
            "quarantined_rows": quarantined,
        }
    db = settings.warehouse_db
    return {
        "runs": runs,
        "layers": layers,
        "quarantine": [(h, r, n) for (h, r), n in sorted(rules.items())],
        "warehouse": str(db) if db.is_file() else None,
    }
