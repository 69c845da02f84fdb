"""WALNUT_DUCKDB_MEMORY: the memory limit of a warehouse build, a DuckDB size."""

from __future__ import annotations

import pytest

from pipeline.settings import DEFAULT_DUCKDB_MEMORY, load_settings
from transforms.errors import ConfigError


def test_default_and_override() -> None:
    assert load_settings({}).duckdb_memory == DEFAULT_DUCKDB_MEMORY == "512MB"
    assert load_settings({"WALNUT_DUCKDB_MEMORY": " 2GB "}).duckdb_memory == "2GB"
    assert load_settings({"WALNUT_DUCKDB_MEMORY": "1.5GiB"}).duckdb_memory == "1.5GiB"


@pytest.mark.parametrize("value", ["512", "lots", "2 GB; DROP TABLE x", "-1GB"])
def test_invalid_values_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="WALNUT_DUCKDB_MEMORY"):
        load_settings({"WALNUT_DUCKDB_MEMORY": value})
