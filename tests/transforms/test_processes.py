"""WALNUT_SYNC_JOBS / WALNUT_FHIR_WORKERS: a process count, else the usable CPUs."""

from __future__ import annotations

import os

import pytest

from transforms.errors import ConfigError
from transforms.processes import frozen_heap, processes


def test_count_from_the_variable_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALNUT_SYNC_JOBS", " 3 ")
    assert processes("WALNUT_SYNC_JOBS") == 3
    monkeypatch.setenv("WALNUT_SYNC_JOBS", "0")
    assert processes("WALNUT_SYNC_JOBS") == 1


def test_unset_or_blank_means_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALNUT_FHIR_WORKERS", " ")
    assert processes("WALNUT_FHIR_WORKERS") == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["two", "1.5", "2 cores"])
def test_not_a_number_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WALNUT_FHIR_WORKERS", value)
    with pytest.raises(ConfigError, match=f"WALNUT_FHIR_WORKERS must be a whole number.*{value!r}"):
        processes("WALNUT_FHIR_WORKERS")


def test_frozen_heap_hides_existing_objects_from_the_collector_until_it_ends() -> None:
    import gc

    before = gc.get_freeze_count()
    with frozen_heap():
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == before


def test_quick_exit_freezes_the_heap_before_the_other_exit_handlers_finish() -> None:
    """Registered last, it runs first: a handler registered before it sees a frozen heap."""
    import subprocess
    import sys

    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "from transforms.processes import quick_exit\n"
        "quick_exit()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "frozen at exit: True"
