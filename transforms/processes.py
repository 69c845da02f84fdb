"""How many processes a parallel step may use: its environment variable, else the usable CPUs."""

from __future__ import annotations

import os


def processes(variable: str) -> int:
    """The positive count in `variable` (at least 1), else the CPUs this process may run on."""
    configured = os.environ.get(variable, "").strip()
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)))
