"""`python -m benchmarks`: run the scales chosen by BENCH_SCALE and write results and docs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.report import describe_machine, markdown, update_docs, write_results
from benchmarks.run import REPO, run_benchmark
from benchmarks.scales import selected_scales

log = logging.getLogger("benchmarks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Per-stage and end-to-end throughput and peak RSS on synthetic hospitals. "
        "BENCH_SCALE: unset = small (~10k rows) + medium (~100k); `large` adds ~1M; or a comma "
        "list of smoke, small, medium, large.",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "var" / "bench",
        help="scratch folder for the generated hospitals (default var/bench)",
    )
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    scales = selected_scales()
    report = run_benchmark(scales, args.work, naive=not args.no_naive)
    machine = describe_machine()
    report["machine"] = machine
    path = write_results(report, args.results)
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    body = markdown(report, machine, shown)
    update_docs(args.docs, body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
