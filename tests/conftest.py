"""Shared fixtures: third-party test data and service availability, skipped with a reason off CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` on a user's machine; fail on CI, where everything must be present."""
    if condition:
        return
    if _on_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The third-party test data folder (../shared/data or $WALNUT_TEST_DATA)."""
    path = Path(os.environ.get("WALNUT_TEST_DATA", ROOT.parent / "shared" / "data"))
    require(path.is_dir(), f"third-party test data not found at {path} (set WALNUT_TEST_DATA)")
    return path
