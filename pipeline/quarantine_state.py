"""The quarantine's columns and which of its entries are still open, shared by the sync,
replay and the warehouse build.

Kept free of pandas: the warehouse build needs only these names and this SQL, and importing
pandas before its DuckDB work (through pipeline/replay.py) put pandas below DuckDB's cache:
the 1 % delta's build at ~1M rows peaked at 437 MB RSS instead of 358 MB.
"""

from __future__ import annotations

# pandas dtypes of a quarantine entry (gov/<hospital>/<batch>/quarantine_<stage>.parquet).
QUARANTINE_COLUMNS = {
    "hospital": "string",
    "batch_id": "string",
    "table": "string",
    "source_file": "string",
    "source_row": "int64",
    "row_hash": "string",
    "stage": "string",
    "rule_id": "string",
    "reason": "string",
    "payload": "string",
}
RELEASE_FILE = "quarantine_release.parquet"
# pandas dtypes of a release record (gov/<hospital>/<replay>/quarantine_release.parquet).
RELEASE_COLUMNS = {
    "hospital": "string",
    "table": "string",
    "original_batch_id": "string",
    "quarantined_in": "string",
    "source_file": "string",
    "source_row": "int64",
    "row_hash": "string",
    "rule_id": "string",
    "released_at": "string",
    "replay_batch_id": "string",
    "mapping_version": "string",
}


def quarantine_state_sql(quarantine: str, release: str) -> str:
    """SQL adding origin_batch_id, released_by, released_at and `open` to quarantine entries.

    A row's current state is its latest attempt (original batch or a replay of it): an entry
    is open when it belongs to that attempt and no replay released the row. Shared by replay
    (which rows to retry) and the warehouse build (gov.quarantine), so both agree.
    """
    key = 'hospital, origin_batch_id, "table", source_file, source_row'
    return f"""
    WITH q AS (
        SELECT *, regexp_replace(batch_id, '-replay-[0-9]+$', '') AS origin_batch_id
        FROM {quarantine}
    ), r AS (
        SELECT hospital, original_batch_id AS origin_batch_id, "table", source_file,
               source_row, min(replay_batch_id) AS released_by, min(released_at) AS released_at
        FROM {release} GROUP BY ALL
    ), attempts AS (
        SELECT {key}, max(batch_id) AS last_attempt FROM (
            SELECT {key}, batch_id FROM q
            UNION ALL SELECT {key}, released_by FROM r
        ) GROUP BY ALL
    )
    SELECT q.*, r.released_by, r.released_at,
           r.released_by IS NULL AND q.batch_id = a.last_attempt AS open
    FROM q JOIN attempts a USING ({key})
    LEFT JOIN r USING ({key})
    """
