"""The warehouse build as the CLI and the Airflow DAG call it: settings from the environment."""

from __future__ import annotations

from pipeline.settings import load_settings


def build_warehouse(full: bool = False) -> dict:
    """Merge every newly synced batch into the warehouse and publish it atomically."""
    from warehouse.build import build_warehouse as build

    result = build(load_settings(), full=full)
    return {k: v for k, v in result.items() if k != "tables"} | {
        "tables": {t: int(n) for t, n in result["tables"].items()}
    }
