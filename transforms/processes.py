"""How many processes a parallel step may use: its environment variable, else the usable CPUs."""

from __future__ import annotations

import os

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
