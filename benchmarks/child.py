"""Run one benchmark step in this (child) process and print its measurements as one JSON line.

Peak RSS is this process's and its own children's (the FHIR process pool) `ru_maxrss`.
Isolated stages and the naive baseline import the heavy libraries (GX, fhir.resources) before
the clock starts, so their rates measure work; whole runs (`sync_all`, `build_all`) pay for
imports, as a nightly task does, and `warm_up` measures the imports alone.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time

from benchmarks.steps import run_step, warm_up
from transforms.processes import quick_exit

# Steps timed with the imports included.
COLD_STEPS = frozenset({"generate", "warm_up", "sync_all", "build_all", "make_delta"})


def main(argv: list[str]) -> None:
    name, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    logging.basicConfig(level=logging.WARNING)
    quick_exit()  # as the `walnut` command exits
    if name not in COLD_STEPS:
        warm_up(None)
    started, cpu = time.perf_counter(), time.process_time()
    result = run_step(name, **kwargs)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    result |= {
        "step": name,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(time.process_time() - cpu + kids.ru_utime + kids.ru_stime, 3),
        "peak_rss_mb": round(own.ru_maxrss / 1024, 1),
        "workers_peak_rss_mb": round(kids.ru_maxrss / 1024, 1),
    }
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
