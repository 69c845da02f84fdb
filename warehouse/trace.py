"""Lineage of one resource: core row -> FHIR file -> staging row -> landed file -> mapping.

Every step is read from files the pipeline already keeps (meta.source, staging lineage
columns, the landing manifest, gov stage.json), and only names, hashes, batch ids and row
numbers are returned: never a source value, so a trace is safe to print or paste.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.settings import Settings, load_settings
from transforms.errors import WalnutError

log = logging.getLogger(__name__)

LINEAGE_PREFIX = "urn:walnut:"


class TraceError(WalnutError):
    """The resource or one link of its lineage cannot be found."""


def parse_lineage(source: str) -> dict[str, str]:
    """`urn:walnut:<hospital>:<batch>:<row hash>` -> its three parts."""
    if not source.startswith(LINEAGE_PREFIX) or source.count(":") != 4:
        raise TraceError(f"meta.source {source!r} is not a walnut lineage key")
    _, _, hospital, batch_id, row_hash = source.split(":")
    return {"hospital": hospital, "batch_id": batch_id, "row_hash": row_hash}


def _core_views() -> dict[str, tuple[str, str]]:
    """Resource type -> (core table, id column), from the ViewDefinitions."""
    from warehouse.build import load_views, resource_key_column

    keys = {view["resource"]: (view, resource_key_column(view)) for view in load_views()}
    return {rtype: (f"core.{view['name']}", key) for rtype, (view, key) in keys.items() if key}


def find_in_warehouse(db: Path, resource_id: str) -> dict | None:
    """The resource as merged in the warehouse (fhir.*) and its core.* row, if built."""
    if not db.is_file():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'fhir' ORDER BY table_name"
        ).fetchall()
        for (table,) in tables:
            row = con.execute(
                f"SELECT resource ->> 'resourceType', resource -> 'meta' ->> 'source', batch_id "
                f"FROM fhir.{table} WHERE id = ?",
                [resource_id],
            ).fetchone()
            if row is None:
                continue
            rtype, source, batch_id = row
            core, id_column = _core_views().get(rtype, (None, None))
            in_core = False
            if core:
                in_core = bool(
                    con.execute(
                        f"SELECT count(*) FROM {core} WHERE {id_column} = ?", [resource_id]
                    ).fetchone()[0]
                )
            return {
                "resource_type": rtype,
                "lineage": source,
                "fhir_table": f"fhir.{table}",
                "warehouse_batch": batch_id,
                "core_table": core if in_core else None,
                "id_column": id_column if in_core else None,
            }
    except duckdb.CatalogException:
        return None
    finally:
        con.close()
    return None


def find_fhir_file(settings: Settings, resource_id: str, batch: dict | None = None) -> dict | None:
    """The NDJSON file and 1-based line holding the resource (newest batch first)."""
    if batch:
        folders = [settings.fhir / batch["hospital"] / batch["batch_id"]]
    else:
        folders = sorted(settings.fhir.glob("*/*"), key=lambda p: p.name, reverse=True)
    needle = f'"{resource_id}"'.encode()
    for folder in folders:
        for path in sorted(folder.glob("[!_]*.ndjson")):
            with path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    if needle not in line:
                        continue
                    resource = json.loads(line)
                    if resource.get("id") == resource_id:
                        return {
                            "resource_type": resource["resourceType"],
                            "lineage": resource.get("meta", {}).get("source", ""),
                            "file": str(path.relative_to(settings.home)),
                            "line": number,
                        }
    return None


def find_staging_row(settings: Settings, hospital: str, batch_id: str, row_hash: str) -> dict:
    """The staged row with this `_row_hash` in the batch's staging Parquet (lineage columns)."""
    columns = ["_source_file", "_source_row", "_source_key", "_row_hash"]
    for path in sorted((settings.staging / hospital).glob(f"*/{batch_id}.parquet")):
        table = pq.read_table(path, columns=columns)
        hit = table.filter(pc.equal(table["_row_hash"], row_hash))
        if hit.num_rows:
            row = hit.slice(0, 1).to_pylist()[0]
            return {
                "table": path.parent.name,
                "file": str(path.relative_to(settings.home)),
                "row_hash": row_hash,
                "source_file": row["_source_file"],
                "source_row": row["_source_row"],
                "has_source_key": row["_source_key"] is not None,
            }
    raise TraceError(f"no staged row with _row_hash {row_hash} in {hospital} batch {batch_id}")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def find_landed_file(settings: Settings, hospital: str, batch_id: str, source_file: str) -> dict:
    """Manifest entry (name, sha256, size, received) of the file a staged row came from.

    A replay batch has no landing of its own: its rows were read from its original batch.
    """
    from pipeline.replay import origin_of

    origin = origin_of(batch_id)
    manifest = _read_json(settings.landing / hospital / origin / "_manifest.json")
    for entry in manifest.get("files", []):
        name = entry["name"]
        # Excel rows carry `file#sheet`; database chunks and plain files their file name.
        if source_file == name or source_file.startswith(name + "#"):
            return {
                "batch_id": origin,
                "name": name,
                "sha256": entry["sha256"],
                "size": entry["size"],
                "received_at": entry["received_at"],
                "sources": entry["sources"],
            }
    raise TraceError(f"{source_file} is not in the manifest of {hospital} batch {origin}")


def trace_resource(resource_id: str, settings: Settings | None = None) -> dict:
    """The lineage chain of one FHIR resource id (`Type/id` accepted), as plain dicts."""
    settings = settings or load_settings()
    resource_id = resource_id.rsplit("/", 1)[-1].strip()
    warehouse = find_in_warehouse(settings.warehouse_db, resource_id)
    lineage = parse_lineage(warehouse["lineage"]) if warehouse else None
    fhir = find_fhir_file(settings, resource_id, lineage)
    if fhir is None:
        raise TraceError(f"no FHIR resource with id {resource_id} in the warehouse or fhir/")
    lineage = parse_lineage(fhir["lineage"])
    hospital, batch_id = lineage["hospital"], lineage["batch_id"]
    staging = find_staging_row(settings, hospital, batch_id, lineage["row_hash"])
    landed = find_landed_file(settings, hospital, batch_id, staging["source_file"])
    gov = settings.gov / hospital / batch_id
    stage, run = _read_json(gov / "stage.json"), _read_json(gov / "load_run.json")
    released = find_release(gov, lineage["row_hash"])
    log.info("traced %s to %s batch %s", resource_id, hospital, batch_id)
    return {
        "resource_id": resource_id,
        "hospital": hospital,
        "warehouse": warehouse,
        "fhir": fhir | {"batch_id": batch_id},
        "staging": staging,
        "landed": landed | {"source_row": staging["source_row"]},
        "mapping": {
            "mapping_version": stage.get("mapping_version") or run.get("mapping_version"),
            "kind": stage.get("kind") or run.get("kind", "sync"),
            "replay_of": stage.get("replay_of"),
            "run_status": run.get("status"),
            "finished_at": run.get("finished_at"),
        },
        "released_from_quarantine": released,
    }


def find_release(gov: Path, row_hash: str) -> list[dict]:
    """Quarantine entries a replay batch released this row from (rule, batch), if any."""
    from pipeline.quarantine_state import RELEASE_FILE

    path = gov / RELEASE_FILE
    if not path.is_file():
        return []
    table = pq.read_table(path, columns=["row_hash", "rule_id", "quarantined_in", "released_at"])
    hit = table.filter(pc.equal(table["row_hash"], row_hash))
    return [{k: v for k, v in r.items() if k != "row_hash"} for r in hit.to_pylist()]
