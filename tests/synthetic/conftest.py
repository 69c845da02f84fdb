"""One generated synthetic tree per test session, shared by the synthetic tests."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from synthetic.generate import generate_all


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Default-size output (200 patients per hospital, seed 42) and its summary."""
    out = tmp_path_factory.mktemp("synthetic")
    return out, generate_all(out, patients=200, seed=42)


@pytest.fixture(scope="session")
def defects(generated: tuple[Path, dict[str, Any]]) -> list[dict[str, str]]:
    with (generated[0] / "_truth" / "defects.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
