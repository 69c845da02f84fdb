"""Import Great Expectations with what it loads for features Walnut never runs left for later.

GX imports every expectation it ships when it is imported. Two of them bring in large libraries
at import time: the KL-divergence and KS-test expectations load `scipy.stats` (~0.6 s) and
the KL-divergence renderer loads `altair` (~0.15 s). No Walnut suite uses them, yet every
`walnut sync` paid for both before syncing a row: about a third of GX's import time, and a
fixed cost of every nightly run however small its delta.

Both modules are imported through the standard library's `importlib.util.LazyLoader`: the
module object exists at once, and it is executed on its first attribute access. Code that does
use them (a future suite with a distribution check, lifelines' survival statistics) gets the
real module, only later. Python 3.11's LazyLoader is not safe for a first access from two
threads at once; Walnut touches neither module from worker threads.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from types import ModuleType

DEFERRED = ("scipy.stats", "altair")


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds `names` with the other finders and wraps their loader in a LazyLoader."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


@contextmanager
def deferred_imports(names: Sequence[str]) -> Iterator[None]:
    """Within the block, importing one of `names` (not yet imported) defers its execution."""
    finder = _DeferringFinder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@cache
def import_gx() -> ModuleType:
    """`great_expectations`, imported once per process with DEFERRED left for first use."""
    # Set before import: GX logs at INFO while importing.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with deferred_imports(DEFERRED):
        import great_expectations
    return great_expectations
