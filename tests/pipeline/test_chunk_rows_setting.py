"""WALNUT_CHUNK_ROWS: the rows per chunk of the batch stages, a positive integer."""

from __future__ import annotations

import pytest

from pipeline.settings import DEFAULT_CHUNK_ROWS, load_settings
from transforms.errors import ConfigError


def test_default_and_override() -> None:
    assert load_settings({}).chunk_rows == DEFAULT_CHUNK_ROWS
    assert load_settings({"WALNUT_CHUNK_ROWS": " "}).chunk_rows == DEFAULT_CHUNK_ROWS
    assert load_settings({"WALNUT_CHUNK_ROWS": "7"}).chunk_rows == 7


@pytest.mark.parametrize("value", ["0", "-5", "1e5", "many"])
def test_invalid_values_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="WALNUT_CHUNK_ROWS"):
        load_settings({"WALNUT_CHUNK_ROWS": value})
