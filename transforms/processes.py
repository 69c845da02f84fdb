"""Processes: how many workers a step may use, a heap ready to fork them, a quick exit."""

from __future__ import annotations

import atexit
import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

from transforms.errors import ConfigError


def processes(variable: str) -> int:
    """The positive count in `variable` (at least 1), else the CPUs this process may run on."""
    configured = os.environ.get(variable, "").strip()
    if not configured:
        return max(1, len(os.sched_getaffinity(0)))
    try:
        return max(1, int(configured))
    except ValueError:
        raise ConfigError(
            f"{variable} must be a whole number of processes such as 2, not {configured!r}"
        ) from None


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the garbage collector of forked workers off the objects they inherit.

    CPython's advice for fork without exec (`gc.freeze`): a child's collections then never
    free or touch its parent's objects (garbage included), such as Arrow buffers allocated by
    the parent's reader threads, which the child's allocator state does not own; and pages
    stay shared instead of being copied when the collector writes to object headers. The
    parent collects them as usual once unfrozen. Workers must be forked inside.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def quick_exit() -> None:
    """Let this command's interpreter exit without the collector's passes over its heap.

    With GX, the FHIR models and DuckDB loaded, finalisation took ~0.8 s of every `walnut`
    command (a tenth of a nightly delta's sync); freezing the heap first (an atexit handler,
    registered last so it runs first) brings that to ~0.05 s. Other atexit handlers and
    module teardown still run; only cyclic garbage is left for the OS to reclaim.
    """
    atexit.register(gc.freeze)
