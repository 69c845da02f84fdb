"""WALNUT_DUCKDB_MEMORY: the memory limit of a warehouse build, a DuckDB size."""

from __future__ import annotations

import pytest

from pipeline.settings import DEFAULT_DUCKDB_MEMORY, load_settings, memory_bytes
from transforms.errors import ConfigError


def test_default_and_override() -> None:
    assert load_settings({}).duckdb_memory == DEFAULT_DUCKDB_MEMORY == "192MB"
    assert load_settings({"WALNUT_DUCKDB_MEMORY": " 2GB "}).duckdb_memory == "2GB"
    assert load_settings({"WALNUT_DUCKDB_MEMORY": "1.5GiB"}).duckdb_memory == "1.5GiB"


@pytest.mark.parametrize("value", ["512", "lots", "2 GB; DROP TABLE x", "-1GB"])
def test_invalid_values_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="WALNUT_DUCKDB_MEMORY"):
        load_settings({"WALNUT_DUCKDB_MEMORY": value})


@pytest.mark.parametrize("size", ["320MB", "1.5GB", "512MiB", " 2 gib", "64KB"])
def test_memory_bytes_reads_a_size_as_duckdb_does(size: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_bytes(size)}B'")
    as_bytes = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    con.execute(f"SET memory_limit = '{size.strip()}'")
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == as_bytes
